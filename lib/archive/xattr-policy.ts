// Which xattrs from a layer tar are applied. File capabilities and user.* are part
// of an image; trusted.* and security.selinux can change what the kernel or the
// host's policy trusts, so they need the caller's explicit opt-in; overlayfs's own
// attributes would turn a plain file into a whiteout or a redirect when the layer
// is later used as a lower dir, so they are always dropped.
export function xattrAllowed(name: string, allowPrivileged: boolean): boolean {
  if (name.startsWith('trusted.overlay.') || name.startsWith('user.overlay.')) return false;
  if (name.startsWith('user.') || name === 'security.capability') return true;
  return allowPrivileged;
}
