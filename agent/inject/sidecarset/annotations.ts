import { InjectError } from '../errors.js';
import { isRecord } from '../k8s.js';
import { compareKeys, goString } from './go-json.js';
import type { PatchPodMetadata } from './types.js';

/** Pod annotation with the comma-separated names of the SidecarSets injected into the pod. */
export const INJECTED_LIST_ANNOTATION = 'kruise.io/sidecarset-injected-list';

/**
 * One value of the pod's `kruise.io/sidecarset-hash` map, as Kruise's SidecarSetUpgradeSpec
 * struct defines it. Fields are in the struct's order, which is also the JSON order.
 */
export interface UpgradeSpec {
  /** RFC 3339 time in UTC with seconds, or null for Go's zero time. */
  updateTimestamp: string | null;
  hash: string;
  sidecarSetName: string;
  /** Sorted names of the sidecar containers; null when Go's slice was nil. */
  sidecarList: string[] | null;
  /** Name of the SidecarSet's ControllerRevision; omitted from JSON when empty. */
  controllerRevision?: string;
}

/** Formats a time as Go's metav1.Time marshals it: UTC, whole seconds. */
export function formatKubeTime(time: Date): string {
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function normalizeEntry(value: unknown, key: string, annotation: string, owner: string): UpgradeSpec {
  const record = isRecord(value) ? value : {};
  const invalid = (field: string): InjectError =>
    new InjectError(`Invalid annotation ${annotation} in ${owner}: field ${field} of entry ${key} has the wrong type. Fix or remove the annotation.`);

  let updateTimestamp: string | null = null;
  if (typeof record.updateTimestamp === 'string') {
    const time = new Date(record.updateTimestamp);
    if (Number.isNaN(time.getTime())) {
      throw invalid('updateTimestamp');
    }
    updateTimestamp = formatKubeTime(time);
  } else if (record.updateTimestamp !== undefined && record.updateTimestamp !== null) {
    throw invalid('updateTimestamp');
  }

  const text = (field: string): string => {
    const fieldValue = record[field];
    if (fieldValue !== undefined && fieldValue !== null && typeof fieldValue !== 'string') {
      throw invalid(field);
    }
    return fieldValue ?? '';
  };
  const list = record.sidecarList;
  if (list !== undefined && list !== null && !(Array.isArray(list) && list.every((name) => typeof name === 'string'))) {
    throw invalid('sidecarList');
  }

  const entry: UpgradeSpec = { updateTimestamp, hash: text('hash'), sidecarSetName: text('sidecarSetName'), sidecarList: (list as string[] | undefined) ?? null };
  const controllerRevision = text('controllerRevision');
  if (controllerRevision !== '') {
    entry.controllerRevision = controllerRevision;
  }
  return entry;
}

/**
 * Parses a `kruise.io/sidecarset-hash` style annotation into its entries by SidecarSet name.
 * Like Kruise, it also reads the older form that maps each SidecarSet name to a bare hash.
 */
export function parseUpgradeSpecs(text: string | undefined, annotation: string, owner: string): Map<string, UpgradeSpec> {
  const specs = new Map<string, UpgradeSpec>();
  if (text === undefined || text === '') {
    return specs;
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isRecord(parsed)) {
    throw new InjectError(`Invalid annotation ${annotation} in ${owner}: expected a JSON object keyed by SidecarSet name. Fix or remove the annotation.`);
  }

  const entries = Object.entries(parsed);
  if (entries.length > 0 && entries.every(([, value]) => typeof value === 'string')) {
    for (const [name, hash] of entries) {
      specs.set(name, { updateTimestamp: null, hash: hash as string, sidecarSetName: name, sidecarList: null });
    }
    return specs;
  }
  for (const [name, value] of entries) {
    if (value !== null && !isRecord(value)) {
      throw new InjectError(`Invalid annotation ${annotation} in ${owner}: entry ${name} is neither an object nor a hash string. Fix or remove the annotation.`);
    }
    specs.set(name, normalizeEntry(value, name, annotation, owner));
  }
  return specs;
}

/** Formats the entries as Go marshals `map[string]SidecarSetUpgradeSpec`: keys sorted, no spaces. */
export function formatUpgradeSpecs(specs: ReadonlyMap<string, UpgradeSpec>): string {
  const entries = [...specs.entries()].sort(([a], [b]) => compareKeys(a, b));
  const body = entries.map(([name, spec]) => {
    const fields = [
      `"updateTimestamp":${spec.updateTimestamp === null ? 'null' : goString(spec.updateTimestamp)}`,
      `"hash":${goString(spec.hash)}`,
      `"sidecarSetName":${goString(spec.sidecarSetName)}`,
      `"sidecarList":${spec.sidecarList === null ? 'null' : `[${spec.sidecarList.map(goString).join(',')}]`}`,
    ];
    if (spec.controllerRevision !== undefined && spec.controllerRevision !== '') {
      fields.push(`"controllerRevision":${goString(spec.controllerRevision)}`);
    }
    return `${goString(name)}:{${fields.join(',')}}`;
  });
  return `{${body.join(',')}}`;
}

// Encodes JSON with sorted keys, as Go marshals the map[string]interface{} that json-patch uses.
function formatSortedJson(value: unknown): string {
  if (Array.isArray(value)) {
    return `[${value.map(formatSortedJson).join(',')}]`;
  }
  if (isRecord(value)) {
    const entries = Object.entries(value).sort(([a], [b]) => compareKeys(a, b));
    return `{${entries.map(([key, entry]) => `${goString(key)}:${formatSortedJson(entry)}`).join(',')}}`;
  }
  return typeof value === 'string' ? goString(value) : JSON.stringify(value);
}

/** Applies a JSON merge patch (RFC 7386). */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isRecord(patch)) {
    return patch;
  }
  const result: Record<string, unknown> = isRecord(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
    } else {
      result[key] = mergePatch(result[key], value);
    }
  }
  return result;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InjectError(`${what} is not valid JSON, which patchPolicy MergePatchJson requires.`);
  }
}

/**
 * Applies a SidecarSet's `patchPodMetadata` to the pod annotations, as Kruise does: Retain (the
 * default) sets keys the pod lacks, Overwrite sets every key, and MergePatchJson merges the value
 * into the pod's JSON value with a JSON merge patch.
 */
export function applyPatchPodMetadata(annotations: Record<string, string>, patches: readonly PatchPodMetadata[], sidecarSetName: string, owner: string): void {
  for (const patch of patches) {
    for (const [key, value] of Object.entries(patch.annotations ?? {})) {
      const policy = patch.patchPolicy ?? 'Retain';
      if (policy === 'Overwrite' || (policy === 'Retain' && !Object.hasOwn(annotations, key))) {
        annotations[key] = value;
      } else if (policy === 'MergePatchJson') {
        const origin = annotations[key];
        if (origin === undefined || origin === '') {
          annotations[key] = value;
          continue;
        }
        const merged = mergePatch(
          parseJson(origin, `Annotation ${key} of ${owner}`),
          parseJson(value, `The patch of annotation ${key} in SidecarSet ${sidecarSetName}`),
        );
        annotations[key] = formatSortedJson(merged);
      }
    }
  }
}
