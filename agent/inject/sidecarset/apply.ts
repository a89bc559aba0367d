import { InjectError } from '../errors.js';
import { setInitContainers, type Container, type EnvVar, type KubePodSpec, type LocalObjectReference, type PodTemplateSpec, type Volume, type VolumeMount } from '../k8s.js';
import { applyPatchPodMetadata, formatKubeTime, formatUpgradeSpecs, INJECTED_LIST_ANNOTATION, parseUpgradeSpecs } from './annotations.js';
import { compareKeys } from './go-json.js';
import { HASH_ANNOTATION, HASH_WITHOUT_IMAGE_ANNOTATION, isNativeSidecar, sidecarSetHash, sidecarSetHashWithoutImage } from './hash.js';
import { buildHotUpgradeSlots, formatWorkingSlots, isHotUpgrade, parseWorkingSlots, WORKING_HOT_UPGRADE_ANNOTATION } from './hot-upgrade.js';
import { SIDECAR_ONLY_FIELDS, type PodInjectPolicy, type SidecarContainer, type SidecarSet, type TransferEnvVar } from './types.js';

/** Env variable that Kruise adds to every container it injects. */
export const INJECTED_ENV = 'IS_INJECTED';

/** Changes that applying the matched SidecarSets made to one pod template. */
export interface SidecarSetReport {
  /** Names of the SidecarSets whose containers were injected, in application order. */
  applied: string[];
  /** Containers added, or replaced where the pod already had one of the same name. */
  containers: string[];
  initContainers: string[];
  replaced: string[];
  volumes: string[];
}

export interface SidecarSetResult {
  template: PodTemplateSpec;
  report: SidecarSetReport;
}

interface Injected {
  container: Container;
  policy: PodInjectPolicy;
}

// Kruise's SubPathExprEnvReg: the $(NAME) references of a volumeMount's subPathExpr.
const SUB_PATH_EXPR_VARIABLE = /\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)/g;

/** util.MergeEnvVar: appends the additional variables whose names are not yet defined. */
function mergeEnv(original: EnvVar[], additional: EnvVar[]): EnvVar[] {
  const names = new Set(original.map((variable) => variable.name));
  const merged = [...original];
  for (const variable of additional) {
    if (!names.has(variable.name)) {
      merged.push(variable);
      names.add(variable.name);
    }
  }
  return merged;
}

/** util.MergeVolumeMounts: appends the additional mounts whose mountPath is not yet used. */
function mergeMounts(original: VolumeMount[], additional: VolumeMount[]): VolumeMount[] {
  const paths = new Set(original.map((mount) => mount.mountPath));
  const merged = [...original];
  for (const mount of additional) {
    if (!paths.has(mount.mountPath)) {
      merged.push(mount);
      paths.add(mount.mountPath);
    }
  }
  return merged;
}

/** util.MergeVolumes: appends the additional volumes whose names are not yet used, so pod volumes win. */
function mergeVolumes(original: Volume[], additional: Volume[]): Volume[] {
  const names = new Set(original.map((volume) => volume.name));
  const merged = [...original];
  for (const volume of additional) {
    if (!names.has(volume.name)) {
      merged.push(volume);
      names.add(volume.name);
    }
  }
  return merged;
}

/**
 * GetInjectedVolumeMountsAndEnvs: with `shareVolumePolicy.type: enabled`, the volumeMounts of every
 * app container (containers Kruise injected earlier, marked IS_INJECTED=true, are skipped) and
 * the env variables their `subPathExpr` references.
 */
function sharedMountsAndEnv(sidecar: SidecarContainer, spec: KubePodSpec): { mounts: VolumeMount[]; env: EnvVar[] } {
  const mounts: VolumeMount[] = [];
  const env: EnvVar[] = [];
  if (sidecar.shareVolumePolicy?.type !== 'enabled') {
    return { mounts, env };
  }

  for (const app of spec.containers) {
    if ((app.env ?? []).find((variable) => variable.name === INJECTED_ENV)?.value === 'true') {
      continue;
    }
    for (const mount of app.volumeMounts ?? []) {
      mounts.push(mount);
      for (const [, name] of (mount.subPathExpr ?? '').matchAll(SUB_PATH_EXPR_VARIABLE)) {
        const variable = (app.env ?? []).find((candidate) => candidate.name === name);
        if (variable !== undefined) {
          env.push(variable);
        }
      }
    }
  }
  return { mounts, env };
}

// ExtractContainerNameFromFieldPath: reads metadata.labels['key'] or metadata.annotations['key'].
function containerNameFromFieldPath(fieldPath: string, template: PodTemplateSpec): string | undefined {
  const match = /^(metadata\.labels|metadata\.annotations)\['(.*)'\]$/.exec(fieldPath);
  if (match === null) {
    return undefined;
  }
  const source = match[1] === 'metadata.labels' ? template.metadata?.labels : template.metadata?.annotations;
  return source?.[match[2]!] ?? '';
}

/**
 * GetSidecarTransferEnvs: copies the named env variables of a source app container. Names are
 * visited in sorted order and a variable the source lacks is skipped, as in Kruise.
 */
function transferredEnv(transfers: readonly TransferEnvVar[], template: PodTemplateSpec, warnings: string[], where: string): EnvVar[] {
  const byKey = new Map<string, EnvVar>();
  for (const container of template.spec.containers) {
    for (const variable of container.env ?? []) {
      byKey.set(`${container.name}/${variable.name}`, variable);
    }
  }

  const result: EnvVar[] = [];
  for (const transfer of transfers) {
    const names = [...new Set([...(transfer.envName ? [transfer.envName] : []), ...(transfer.envNames ?? [])])].sort();
    let source = transfer.sourceContainerName ?? '';
    const fieldPath = transfer.sourceContainerNameFrom?.fieldRef?.fieldPath;
    if (fieldPath !== undefined) {
      const name = containerNameFromFieldPath(fieldPath, template);
      if (name === undefined) {
        warnings.push(`${where}: transferEnv fieldPath ${fieldPath} is not metadata.labels['KEY'] or metadata.annotations['KEY'], so Kruise skips it; skipped`);
        continue;
      }
      source = name;
    }
    for (const name of names) {
      const variable = byKey.get(`${source}/${name}`);
      if (variable !== undefined) {
        result.push(variable);
      }
    }
  }
  return result;
}

/** Builds the pod container from a SidecarSet container, as Kruise's buildSidecars does on pod creation. */
function buildSidecar(sidecar: SidecarContainer, template: PodTemplateSpec, warnings: string[], where: string): Container {
  const shared = sharedMountsAndEnv(sidecar, template.spec);
  const transfers = mergeEnv(transferredEnv(sidecar.transferEnv ?? [], template, warnings, where), shared.env);

  const container = structuredClone(sidecar) as Record<string, unknown>;
  for (const field of SIDECAR_ONLY_FIELDS) {
    delete container[field];
  }
  const built = container as Container;
  if (shared.mounts.length > 0) {
    built.volumeMounts = mergeMounts(built.volumeMounts ?? [], structuredClone(shared.mounts));
  }
  built.env = mergeEnv([...(built.env ?? []), { name: INJECTED_ENV, value: 'true' }], structuredClone(transfers));
  return built;
}

/**
 * mergeSidecarContainers: a container whose name the pod already uses replaces it in place, which
 * keeps an already injected sidecar from being added twice. The others go before or after the
 * pod's containers by their podInjectPolicy.
 */
function mergeContainers(origins: Container[], injected: Injected[], replaced: string[]): Container[] {
  const merged = [...origins];
  const before: Container[] = [];
  const after: Container[] = [];
  for (const { container, policy } of injected) {
    const index = merged.findIndex((origin) => origin.name === container.name);
    if (index !== -1) {
      merged[index] = container;
      replaced.push(container.name);
    } else if (policy === 'AfterAppContainer') {
      after.push(container);
    } else {
      before.push(container);
    }
  }
  return [...before, ...merged, ...after];
}

/** mergeSidecarSecrets: the pod's pull secrets, then the SidecarSets', each name once. */
function mergeSecrets(pod: LocalObjectReference[], sidecar: LocalObjectReference[]): LocalObjectReference[] {
  const seen = new Set<string | undefined>();
  return [...pod, ...sidecar].filter((secret) => {
    if (seen.has(secret.name)) {
      return false;
    }
    seen.add(secret.name);
    return true;
  });
}

// Kruise's validating webhook rejects SidecarSets whose selectors overlap and that inject the same
// container name, so two matched SidecarSets may not share one.
function checkNameConflicts(sidecarSets: readonly SidecarSet[], owner: string): void {
  for (const field of ['containers', 'initContainers'] as const) {
    const ownerOf = new Map<string, string>();
    for (const sidecarSet of sidecarSets) {
      for (const container of sidecarSet.spec[field] ?? []) {
        const other = ownerOf.get(container.name);
        if (other !== undefined) {
          throw new InjectError(
            `SidecarSets ${other} and ${sidecarSet.metadata.name} both match ${owner} and both inject ${field === 'containers' ? 'container' : 'init container'} ` +
              `${container.name}; Kruise rejects such SidecarSets. Rename one container or narrow a selector.`,
          );
        }
        ownerOf.set(container.name, sidecarSet.metadata.name);
      }
    }
  }
}

/**
 * Applies the SidecarSets that match a pod template, as Kruise's pod webhook does when the pod is
 * created, and returns the new template. It applies patchPodMetadata and adds init containers
 * sorted by name after the pod's own, and containers before or after the app containers. It adds
 * the SidecarSet volumes the sidecars mount (a pod volume of the same name wins), pull secrets,
 * and the annotations `kruise.io/sidecarset-hash`, `kruise.io/sidecarset-hash-without-image` and
 * `kruise.io/sidecarset-injected-list`. A HotUpgrade container is injected as two slots with the
 * version and working-slot annotations (see hot-upgrade.ts). `matched` must already be filtered by selector and
 * namespace. The input is not changed.
 */
export function applySidecarSets(input: PodTemplateSpec, matched: readonly SidecarSet[], now: Date, owner: string, warnings: string[]): SidecarSetResult {
  const report: SidecarSetReport = { applied: [], containers: [], initContainers: [], replaced: [], volumes: [] };
  if (matched.length === 0) {
    return { template: input, report };
  }
  checkNameConflicts(matched, owner);

  const template = structuredClone(input);
  template.metadata ??= {};
  const annotations = { ...template.metadata.annotations };
  for (const sidecarSet of matched) {
    applyPatchPodMetadata(annotations, sidecarSet.spec.patchPodMetadata ?? [], sidecarSet.metadata.name, owner);
  }
  // patchPodMetadata takes effect even when no container is injected, and transferEnv reads it.
  if (Object.keys(annotations).length > 0) {
    template.metadata.annotations = annotations;
  }

  const hashes = parseUpgradeSpecs(annotations[HASH_ANNOTATION], HASH_ANNOTATION, owner);
  const hashesWithoutImage = parseUpgradeSpecs(annotations[HASH_WITHOUT_IMAGE_ANNOTATION], HASH_WITHOUT_IMAGE_ANNOTATION, owner);
  const listText = annotations[INJECTED_LIST_ANNOTATION];
  const injectedList = new Set(listText ? listText.split(',') : []);
  const timestamp = formatKubeTime(now);
  // Set by the first hot-upgrade container, so a pod without one keeps its annotations as they are.
  let workingSlots: Map<string, string> | undefined;
  const hotUpgradeAnnotations: Record<string, string> = {};

  const containers: Injected[] = [];
  const initContainers: Injected[] = [];
  const secrets: LocalObjectReference[] = [];
  const volumes: Volume[] = [];

  for (const sidecarSet of matched) {
    const name = sidecarSet.metadata.name;
    const where = `SidecarSet ${name} on ${owner}`;
    injectedList.add(name);
    const volumesByName = new Map((sidecarSet.spec.volumes ?? []).map((volume) => [volume.name, volume]));
    const sidecarList = new Set<string>();
    const collectVolumes = (sidecar: SidecarContainer): void => {
      for (const mount of sidecar.volumeMounts ?? []) {
        volumes.push(structuredClone(volumesByName.get(mount.name)!));
      }
    };

    // Init containers and pull secrets are injected only when a pod is created, which is the
    // only case offline.
    for (const sidecar of sidecarSet.spec.initContainers ?? []) {
      if (isNativeSidecar(sidecar)) {
        sidecarList.add(sidecar.name);
      }
      collectVolumes(sidecar);
      initContainers.push({ container: buildSidecar(sidecar, template, warnings, where), policy: sidecar.podInjectPolicy || 'AfterAppContainer' });
    }
    secrets.push(...structuredClone(sidecarSet.spec.imagePullSecrets ?? []));

    // sidecarList names the SidecarSet container even when hot upgrade injects it as two slots.
    for (const sidecar of sidecarSet.spec.containers ?? []) {
      sidecarList.add(sidecar.name);
      collectVolumes(sidecar);
      const policy = sidecar.podInjectPolicy || 'BeforeAppContainer';
      const built = buildSidecar(sidecar, template, warnings, where);
      if (isHotUpgrade(sidecar)) {
        workingSlots ??= parseWorkingSlots(annotations[WORKING_HOT_UPGRADE_ANNOTATION], warnings, owner);
        for (const slot of buildHotUpgradeSlots(built, sidecar, hotUpgradeAnnotations, workingSlots)) {
          containers.push({ container: slot, policy });
        }
      } else {
        containers.push({ container: built, policy });
      }
    }

    // Every SidecarSet has a container or an init container (the loader checks), so it injects.
    const list = [...sidecarList].sort();
    hashes.set(name, {
      updateTimestamp: timestamp,
      hash: sidecarSetHash(sidecarSet),
      sidecarSetName: name,
      sidecarList: list,
      controllerRevision: sidecarSet.status?.latestRevision,
    });
    hashesWithoutImage.set(name, { updateTimestamp: timestamp, hash: sidecarSetHashWithoutImage(sidecarSet), sidecarSetName: name, sidecarList: list });
    if (sidecarSet.spec.injectionStrategy?.revision !== undefined) {
      warnings.push(`${where}: injectionStrategy.revision needs the cluster's ControllerRevisions; the SidecarSet was applied as written`);
    }
    report.applied.push(name);
  }

  // Kruise sorts the injected init containers by name with sort.SliceStable, and
  // Array.prototype.sort is stable too.
  initContainers.sort((a, b) => compareKeys(a.container.name, b.container.name));
  if (initContainers.length > 0) {
    template.spec = setInitContainers(template.spec, mergeContainers(template.spec.initContainers ?? [], initContainers, report.replaced));
  }
  const spec = template.spec;
  spec.containers = mergeContainers(spec.containers, containers, report.replaced);

  const volumesBefore = new Set((spec.volumes ?? []).map((volume) => volume.name));
  const mergedVolumes = mergeVolumes(spec.volumes ?? [], volumes);
  if (mergedVolumes.length > 0) {
    spec.volumes = mergedVolumes;
  }
  report.volumes = mergedVolumes.map((volume) => volume.name).filter((volumeName) => !volumesBefore.has(volumeName));

  const mergedSecrets = mergeSecrets(spec.imagePullSecrets ?? [], secrets);
  if (mergedSecrets.length > 0) {
    spec.imagePullSecrets = mergedSecrets;
  }

  annotations[HASH_ANNOTATION] = formatUpgradeSpecs(hashes);
  annotations[HASH_WITHOUT_IMAGE_ANNOTATION] = formatUpgradeSpecs(hashesWithoutImage);
  annotations[INJECTED_LIST_ANNOTATION] = [...injectedList].sort().join(',');
  if (workingSlots !== undefined) {
    Object.assign(annotations, hotUpgradeAnnotations);
    annotations[WORKING_HOT_UPGRADE_ANNOTATION] = formatWorkingSlots(workingSlots);
  }
  template.metadata.annotations = annotations;

  report.containers = containers.map(({ container }) => container.name);
  report.initContainers = initContainers.map(({ container }) => container.name);
  return { template, report };
}
