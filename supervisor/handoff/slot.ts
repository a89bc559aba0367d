/**
 * Identity of a hot-upgrade slot. OpenKruise runs a HotUpgrade sidecar `<name>` as two containers,
 * `<name>-1` and `<name>-2`, and gives each its own version and the other's through the downward
 * API: `SIDECARSET_VERSION` and `SIDECARSET_VERSION_ALT`. The empty slot has version "0". Kruise
 * raises the version by one at each upgrade, rollbacks included.
 */

export const VERSION_ENV = 'SIDECARSET_VERSION';
export const VERSION_ALT_ENV = 'SIDECARSET_VERSION_ALT';
/** Version of the slot that runs the empty image. */
export const EMPTY_VERSION = '0';

export interface Slot {
  /** The SidecarSet container's name, without the slot suffix. */
  base: string;
  name: string;
  /** The other slot's container name. */
  peer: string;
  version: string;
  /** The other slot's version when this container started. */
  altVersion: string | undefined;
}

/**
 * Returns the slot a container runs in, or undefined when it is not a hot-upgrade slot (no
 * SIDECARSET_VERSION, or an empty one, as the downward API gives for a missing annotation).
 * Throws when the variable is set on a container whose name has no slot suffix.
 */
export function slotOf(name: string, env: NodeJS.ProcessEnv): Slot | undefined {
  const version = env[VERSION_ENV]?.trim();
  if (version === undefined || version === '') {
    return undefined;
  }
  const match = /^(.+)-([12])$/.exec(name);
  if (match === null) {
    throw new Error(
      `${VERSION_ENV}=${version} is set, but the container name ${JSON.stringify(name)} does not end in -1 or -2 as the two slots of a hot-upgrade sidecar do. Name the slots <sidecar>-1 and <sidecar>-2, or unset ${VERSION_ENV}.`,
    );
  }
  const [, base, index] = match;
  return { base: base!, name, peer: `${base}-${index === '1' ? '2' : '1'}`, version, altVersion: env[VERSION_ALT_ENV]?.trim() || undefined };
}

/** Reports whether a slot runs the empty image and must park. */
export function isEmptySlot(slot: Slot): boolean {
  return slot.version === EMPTY_VERSION;
}

/**
 * Reports whether `candidate` replaces `current`. Kruise's versions are counters, so the greater
 * one is newer. Versions that are not both whole numbers are compared for equality only: a slot
 * started with another version is an upgrade, and one with the same version is not.
 */
export function supersedes(candidate: string, current: string): boolean {
  if (/^\d+$/.test(candidate) && /^\d+$/.test(current)) {
    return BigInt(candidate) > BigInt(current);
  }
  return candidate !== current;
}
