import { isRecord, type Container, type EnvVar } from '../k8s.js';
import { compareKeys, goString } from './go-json.js';
import type { SidecarContainer } from './types.js';

/**
 * Kruise's HotUpgrade sidecars (pkg/control/sidecarcontrol/util_hotupgrade.go and
 * pkg/webhook/pod/mutating/sidecarset_hotupgrade.go). On pod creation a hot-upgrade container
 * `<name>` becomes two slots: `<name>-1` runs the SidecarSet image and `<name>-2` runs
 * `upgradeStrategy.hotUpgradeEmptyImage`. Kruise's controller later swaps the images between
 * the slots to upgrade the sidecar without restarting the pod.
 */

/** Pod annotation: JSON map from each hot-upgrade SidecarSet container to the slot that runs it now. */
export const WORKING_HOT_UPGRADE_ANNOTATION = 'kruise.io/sidecarset-working-hotupgrade-container';
/** Env variable with the slot's own version, read from the pod annotation `version.sidecarset.kruise.io/<slot>`. */
export const VERSION_ENV = 'SIDECARSET_VERSION';
/** Env variable with the other slot's version, read from `versionalt.sidecarset.kruise.io/<slot>`. */
export const VERSION_ALT_ENV = 'SIDECARSET_VERSION_ALT';

/** Version of the slot that runs the empty image, in the pod annotation and SIDECARSET_VERSION. */
export const EMPTY_SLOT_VERSION = '0';

export function isHotUpgrade(sidecar: SidecarContainer): boolean {
  return sidecar.upgradeStrategy?.upgradeType === 'HotUpgrade';
}

export function versionAnnotation(slotName: string): string {
  return `version.sidecarset.kruise.io/${slotName}`;
}

export function versionAltAnnotation(slotName: string): string {
  return `versionalt.sidecarset.kruise.io/${slotName}`;
}

/**
 * Parses the working-slot annotation. A value that is not a JSON object of strings is discarded
 * with a warning, and Kruise likewise logs the parse error and overwrites the annotation.
 */
export function parseWorkingSlots(text: string | undefined, warnings: string[], owner: string): Map<string, string> {
  const slots = new Map<string, string>();
  if (text === undefined) {
    return slots;
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isRecord(parsed) || !Object.values(parsed).every((value) => typeof value === 'string')) {
    warnings.push(`${owner}: annotation ${WORKING_HOT_UPGRADE_ANNOTATION} is not a JSON object of strings, so it was replaced`);
    return slots;
  }
  for (const [sidecar, slot] of Object.entries(parsed)) {
    slots.set(sidecar, slot as string);
  }
  return slots;
}

/** Formats the working-slot map as Go's json.Marshal does for map[string]string: keys sorted, no spaces. */
export function formatWorkingSlots(slots: ReadonlyMap<string, string>): string {
  const entries = [...slots.entries()].sort(([a], [b]) => compareKeys(a, b));
  return `{${entries.map(([sidecar, slot]) => `${goString(sidecar)}:${goString(slot)}`).join(',')}}`;
}

function versionEnv(slotName: string): EnvVar[] {
  return [
    { name: VERSION_ENV, valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${versionAnnotation(slotName)}']` } } },
    { name: VERSION_ALT_ENV, valueFrom: { fieldRef: { fieldPath: `metadata.annotations['${versionAltAnnotation(slotName)}']` } } },
  ];
}

/**
 * Splits a built hot-upgrade sidecar into its two slots. It adds the slots' version annotations
 * to `injectedAnnotations`, which the caller writes to the pod after all SidecarSets are built,
 * as Kruise does, and records slot 1 in `workingSlots`. `built` is the container as buildSidecar returns it, with IS_INJECTED and the transferred env,
 * so both slots keep its env, volumeMounts and lifecycle. Slot 1 is the working slot with version
 * "1"; slot 2 runs the empty image with version "0". The two version env variables are appended
 * after the container's own env, as Kruise appends them.
 *
 * Kruise's webhook adds no lifecycle hook of its own, and both slots keep the SidecarSet
 * container's `lifecycle.postStart`. The hand-off between the slots is the supervisor's: it reads
 * the two version variables (supervisor/handoff/slot.ts), parks the empty slot, and moves the
 * listening sockets to the new version (docs/hot-upgrade.md).
 */
export function buildHotUpgradeSlots(
  built: Container,
  sidecar: SidecarContainer,
  injectedAnnotations: Record<string, string>,
  workingSlots: Map<string, string>,
): [Container, Container] {
  const working = structuredClone(built);
  working.name = `${sidecar.name}-1`;
  working.env = [...(working.env ?? []), ...versionEnv(working.name)];

  const empty = structuredClone(built);
  empty.name = `${sidecar.name}-2`;
  empty.image = sidecar.upgradeStrategy?.hotUpgradeEmptyImage;
  empty.env = [...(empty.env ?? []), ...versionEnv(empty.name)];

  injectedAnnotations[versionAnnotation(working.name)] = '1';
  injectedAnnotations[versionAltAnnotation(working.name)] = EMPTY_SLOT_VERSION;
  injectedAnnotations[versionAnnotation(empty.name)] = EMPTY_SLOT_VERSION;
  injectedAnnotations[versionAltAnnotation(empty.name)] = '1';
  workingSlots.set(sidecar.name, working.name);
  return [working, empty];
}
