// ogd's exit codes, podman's (podman(1), "Exit Codes"; podman-exists(1), podman-rm(1)):
// 125 for an error of ogd itself (a usage mistake included: podman answers
// `podman --foo` with 125), 1 where the command's answer is "no" (`exists`, `check`
// finding problems, `rm` of an id that does not exist), 2 where `rm` finds a layer in
// use, and the shell's numbers for a process stopped by a signal.
export const EXIT_OK = 0;
/** The answer is "no": not there, not healthy. */
export const EXIT_NO = 1;
/** `rm`: a layer is in use (mounted, or another layer stands on it); podman-rm's 2. */
export const EXIT_IN_USE = 2;
/** The command failed, or was called wrongly: an error of ogd itself. */
export const EXIT_FAILURE = 125;
/** What a shell reports for a writer killed by SIGPIPE: the reader closed our stdout. */
export const EXIT_OUTPUT_CLOSED = 141;
