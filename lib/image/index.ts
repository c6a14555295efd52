// The image transport (issue 12's half that needs no store): references, registries
// and OCI layouts, pull into a LayerTarget, commit, push. Internal for now: the store
// (lib/store) calls it and lib/index.ts exports what users need through the store.
export { BlobCache } from './blob-cache.js';
export { commitImage, type CommitOptions } from './commit.js';
export { chainIds, isDigest, layerIdOf, parseDigest, type Digest } from './digest.js';
export { driverTarget, type Image, type ImageLayer, type LayerTarget } from './image.js';
export { MediaType, hostPlatform, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type Platform } from './manifest.js';
export { pullImage, resolveImage, openSource, type LayerProgress, type PullOptions, type PullResult } from './pull.js';
export { pushImage, type PushImage, type PushOptions, type PushProgress, type PushResult } from './push.js';
export { formatReference, parseReference, type DockerReference, type ImageReference, type OciLayoutReference } from './reference.js';
export type { RegistryOptions } from './registry.js';
