// The example server's entry point (see examples/README.md):
//   node dist/examples/server/main.js --home DIR [--host 127.0.0.1] [--port 8080] [--insecure-registry HOST:PORT]…
// Prints "listening on http://HOST:PORT" once it takes requests (--port 0: a free port).
// SIGTERM or SIGINT: stop taking requests, abort those in progress (pulls, runs),
// unmount every container it holds, close the store, exit 0. A second signal during
// that kills it at once; the store's next open reclaims what it held.
import { parseArgs } from 'node:util';
import { openStore, DRIVER_NAMES, type DriverName } from 'overlay-graphdriver';
import { createApp } from './app.js';
import { chrootRunner } from './run-in-root.js';

const { values } = parseArgs({
  options: {
    home: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '8080' },
    driver: { type: 'string' },
    'insecure-registry': { type: 'string', multiple: true, default: [] },
  },
});
if (values.home === undefined) {
  console.error('usage: main.js --home DIR [--host 127.0.0.1] [--port 8080] [--driver overlay|overlay2|vfs] [--insecure-registry HOST:PORT]…');
  process.exit(2);
}
const driver = values.driver;
if (driver !== undefined && !(DRIVER_NAMES as readonly string[]).includes(driver)) {
  console.error(`--driver must be one of ${DRIVER_NAMES.join(', ')}`);
  process.exit(2);
}

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('--port must be a port number (0: any free port)');
  process.exit(2);
}

const log = (line: string) => console.log(line);
const store = await openStore(values.home, driver !== undefined ? { driver: driver as DriverName } : {});
// Root only, like the store's mounts; a store-provided spawn (rootless) would be chosen here.
const app = createApp(store, { runner: chrootRunner, log, insecureRegistries: new Set(values['insecure-registry']) });

const stop = (signal: NodeJS.Signals) => {
  log(`${signal}: shutting down`);
  app.shutdown().then(
    () => log('stopped'),
    (err: unknown) => {
      console.error('shutdown failed:', err);
      process.exitCode = 1;
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

app.server.listen(port, values.host, () => {
  const address = app.server.address();
  if (address !== null && typeof address === 'object') log(`listening on http://${values.host.includes(':') ? `[${values.host}]` : values.host}:${address.port}`);
});
