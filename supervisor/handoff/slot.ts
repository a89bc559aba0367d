/**
 * Identity of a hot-upgrade slot. OpenKruise runs a HotUpgrade sidecar `<name>` as two containers,
 * `<name>-1` and `<name>-2`, and gives each its own version and the other's through the downward
 * API: `SIDECARSET_VERSION` and `SIDECARSET_VERSION_ALT`. The empty slot has version "0", the
 * first working slot "1", and a slot upgraded later the SidecarSet's resourceVersion at that time
 * (Kruise's sidecarset controller), so each upgrade, a rollback included, brings a new version.
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
 * Reports whether a slot of `version` replaces the serving slot of `servingVersion`, which took
 * over from `servingReplaced` (undefined when it started alone). Another version is an upgrade,
 * except the one the serving slot replaced (an old slot restarted before Kruise reset it to the
 * empty image) and a lower whole number. Kubernetes documents resourceVersion as opaque, but
 * etcd's are increasing whole numbers, and a rollback gets a new, higher one.
 */
export function replaces(version: string, servingVersion: string, servingReplaced: string | undefined): boolean {
  return version !== servingVersion && version !== servingReplaced && compareVersions(version, servingVersion) >= 0;
}

/**
 * Orders two versions for a tie-break only: numerically when both are whole numbers, as etcd's
 * resourceVersions are in practice, and otherwise not at all (0).
 */
export function compareVersions(left: string, right: string): number {
  if (/^\d+$/.test(left) && /^\d+$/.test(right)) {
    const difference = BigInt(left) - BigInt(right);
    if (difference === 0n) {
      return 0;
    }
    return difference < 0n ? -1 : 1;
  }
  return 0;
}
