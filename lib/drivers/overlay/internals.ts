// What the overlay driver shows its quick changes (lib/drivers/overlay/diff.ts): the
// layout of a layer on disk, nothing more. Every path here is built from a validated id.

export interface LayerPaths {
  /** home/<id> */
  dir: string;
  /** home/<id>/root when the layer is an image (has a full tree). */
  root?: string;
  /** For a layer on top of an image: its upper, work and merged dirs, and the image's id and root. */
  upper?: string;
  work?: string;
  merged?: string;
  lowerId?: string;
  lowerRoot?: string;
}

export interface OverlayInternals {
  /** Validates `id` and reads its layout; rejects with LayerNotFound when it does not exist. */
  layerPaths(id: string): Promise<LayerPaths>;
}
