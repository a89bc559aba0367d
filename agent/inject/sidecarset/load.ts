import { InjectError } from '../errors.js';
import { isRecord, type KubeObject } from '../k8s.js';
import { validateLabelSelector } from './selector.js';
import type { LoadedSidecarSet, SidecarContainer, SidecarSet } from './types.js';

export const SIDECARSET_API_GROUP = 'apps.kruise.io';

// Kruise's SidecarSet webhook accepts names of letters, digits and '-', at most 63 characters.
const NAME_PATTERN = /^[a-zA-Z0-9-]{1,63}$/;

function isSidecarSet(object: unknown): object is KubeObject {
  return isRecord(object) && object.kind === 'SidecarSet' && typeof object.apiVersion === 'string' && object.apiVersion.startsWith(`${SIDECARSET_API_GROUP}/`);
}

function validateContainer(container: unknown, field: string, volumeNames: ReadonlySet<string>, where: string): void {
  if (!isRecord(container) || typeof container.name !== 'string' || container.name === '') {
    throw new InjectError(`Invalid ${where}: ${field} has no name.`);
  }
  const sidecar = container as SidecarContainer;
  const at = `${where}: ${field} (${sidecar.name})`;

  if (sidecar.podInjectPolicy !== undefined && sidecar.podInjectPolicy !== 'BeforeAppContainer' && sidecar.podInjectPolicy !== 'AfterAppContainer') {
    throw new InjectError(`Invalid ${at}: podInjectPolicy ${JSON.stringify(sidecar.podInjectPolicy)}, expected BeforeAppContainer or AfterAppContainer.`);
  }
  const shareType = sidecar.shareVolumePolicy?.type;
  if (shareType !== undefined && shareType !== 'enabled' && shareType !== 'disabled') {
    throw new InjectError(`Invalid ${at}: shareVolumePolicy.type ${JSON.stringify(shareType)}, expected enabled or disabled (lower case, as Kruise requires).`);
  }

  if (sidecar.upgradeStrategy?.upgradeType === 'HotUpgrade') {
    // NOTE: older Kruise webhooks inject an init container once and ignore its upgradeStrategy,
    // and newer ones split a native sidecar init container into two slots. tandem rejects both.
    if (field.startsWith('spec.initContainers')) {
      throw new InjectError(`Unsupported ${at}: tandem inject supports upgradeStrategy HotUpgrade on spec.containers only. Use ColdUpgrade or move the container to spec.containers.`);
    }
    // Kruise's SidecarSet webhook accepts a missing empty image, but the pod it injects then has a
    // container without an image, which the API server rejects.
    const emptyImage = sidecar.upgradeStrategy?.hotUpgradeEmptyImage;
    if (typeof emptyImage !== 'string' || emptyImage === '') {
      throw new InjectError(
        `Invalid ${at}: upgradeStrategy HotUpgrade requires upgradeStrategy.hotUpgradeEmptyImage, the image that runs in the idle slot ${sidecar.name}-2. ` +
          'Set it to an image with the same command that does no work.',
      );
    }
  }

  const deviceShare = (container.shareVolumeDevicePolicy as { type?: string } | undefined)?.type;
  if (deviceShare !== undefined && deviceShare !== 'disabled') {
    throw new InjectError(`Unsupported ${at}: shareVolumeDevicePolicy is not supported by tandem inject. Remove it.`);
  }
  if (container.resourcesPolicy !== undefined) {
    throw new InjectError(`Unsupported ${at}: resourcesPolicy is not supported by tandem inject. Set the sidecar's resources directly.`);
  }

  for (const mount of sidecar.volumeMounts ?? []) {
    if (!volumeNames.has(mount.name)) {
      throw new InjectError(`Invalid ${at}: volumeMount ${mount.name} refers to a volume that spec.volumes does not define. Add the volume to the SidecarSet.`);
    }
  }

  for (const transfer of sidecar.transferEnv ?? []) {
    if (!isRecord(transfer)) {
      throw new InjectError(`Invalid ${at}: a transferEnv entry is not an object.`);
    }
    if (transfer.envNames !== undefined && !(Array.isArray(transfer.envNames) && transfer.envNames.every((name) => typeof name === 'string'))) {
      throw new InjectError(`Invalid ${at}: transferEnv envNames must be a list of strings.`);
    }
  }
}

/** Checks a SidecarSet the way Kruise's admission webhook would, so a set Kruise rejects is rejected here too. */
function validateSidecarSet(object: KubeObject, source: string): SidecarSet {
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const name = metadata.name;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new InjectError(`Invalid SidecarSet in ${source}: metadata.name ${JSON.stringify(name)} must be 1 to 63 letters, digits or '-'.`);
  }
  const where = `SidecarSet ${name} in ${source}`;
  if (!isRecord(object.spec)) {
    throw new InjectError(`Invalid ${where}: spec is missing.`);
  }
  const spec = object.spec;

  if (!isRecord(spec.selector)) {
    throw new InjectError(`Invalid ${where}: spec.selector is missing. Kruise requires a selector.`);
  }
  validateLabelSelector(spec.selector, `${where}: spec.selector`);
  if (spec.namespace !== undefined && spec.namespace !== '' && spec.namespaceSelector !== undefined) {
    throw new InjectError(`Invalid ${where}: spec.namespace and spec.namespaceSelector are mutually exclusive. Keep one.`);
  }
  if (spec.namespaceSelector !== undefined) {
    if (!isRecord(spec.namespaceSelector)) {
      throw new InjectError(`Invalid ${where}: spec.namespaceSelector is not an object.`);
    }
    const { namespaces, ...labelSelector } = spec.namespaceSelector;
    if (namespaces === undefined || (Array.isArray(namespaces) && namespaces.length === 0)) {
      validateLabelSelector(labelSelector, `${where}: spec.namespaceSelector`);
    }
  }

  for (const field of ['containers', 'initContainers', 'volumes', 'imagePullSecrets', 'patchPodMetadata'] as const) {
    if (spec[field] !== undefined && spec[field] !== null && !Array.isArray(spec[field])) {
      throw new InjectError(`Invalid ${where}: spec.${field} is not a list.`);
    }
  }
  const containers = (spec.containers ?? []) as unknown[];
  const initContainers = (spec.initContainers ?? []) as unknown[];
  if (containers.length === 0 && initContainers.length === 0) {
    throw new InjectError(`Invalid ${where}: it defines no containers or initContainers.`);
  }

  const volumeNames = new Set(((spec.volumes ?? []) as unknown[]).map((volume) => (isRecord(volume) ? volume.name : undefined)).filter((volumeName) => typeof volumeName === 'string'));
  containers.forEach((container, index) => validateContainer(container, `spec.containers[${index}]`, volumeNames, where));
  initContainers.forEach((container, index) => validateContainer(container, `spec.initContainers[${index}]`, volumeNames, where));

  for (const [index, patch] of ((spec.patchPodMetadata ?? []) as unknown[]).entries()) {
    const policy = isRecord(patch) ? patch.patchPolicy : undefined;
    if (!isRecord(patch) || !isRecord(patch.annotations) || Object.keys(patch.annotations).length === 0) {
      throw new InjectError(`Invalid ${where}: spec.patchPodMetadata[${index}] defines no annotations.`);
    }
    if (policy !== undefined && policy !== 'Retain' && policy !== 'Overwrite' && policy !== 'MergePatchJson') {
      throw new InjectError(`Invalid ${where}: spec.patchPodMetadata[${index}].patchPolicy ${JSON.stringify(policy)}, expected Retain, Overwrite or MergePatchJson.`);
    }
  }

  return object as unknown as SidecarSet;
}

/**
 * Collects the SidecarSets of parsed manifests, including the items of a `List`, and validates
 * them. Other kinds are skipped. A file without any SidecarSet is an error, because it was passed
 * to `--sidecarset` by mistake.
 */
export function loadSidecarSets(documents: readonly unknown[], source: string): LoadedSidecarSet[] {
  const found: KubeObject[] = [];
  for (const document of documents) {
    if (isSidecarSet(document)) {
      found.push(document);
    } else if (isRecord(document) && document.kind === 'List' && Array.isArray(document.items)) {
      found.push(...document.items.filter(isSidecarSet));
    }
  }
  if (found.length === 0) {
    throw new InjectError(`${source} contains no SidecarSet (kind SidecarSet, apiVersion ${SIDECARSET_API_GROUP}/v1alpha1).`);
  }
  return found.map((object) => ({ sidecarSet: validateSidecarSet(object, source), source }));
}
