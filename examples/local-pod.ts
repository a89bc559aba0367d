import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EMPTY_DIR_SEPARATOR } from './podman.js';

/**
 * Turns injected Kubernetes objects into a Pod manifest that `podman kube play` runs as kubelet
 * would. Four gaps of podman 4.3 are bridged here, never in tandem itself:
 * - it runs no Deployment or Job controller, so the pod comes from the template;
 * - it ignores `subPath` on configMap volumes, so those keys become files on the host;
 * - it rejects annotation values longer than 63 characters, a limit Kubernetes sets for label
 *   values only, so long annotations are left out;
 * - it applies restartPolicy Always to init containers too, restarting them after success, so an
 *   Always pod is played with OnFailure. tandem's supervisors still read Always from the pod spec
 *   that the injector wrote;
 * - it plays an emptyDir as a named volume called after the volume, shared by every pod that uses
 *   the name, so emptyDir volumes are renamed after the pod.
 */

/** Maximum length of an annotation value that podman 4.3 accepts. */
const PODMAN_MAX_ANNOTATION_LENGTH = 63;

type Json = Record<string, any>;

const TEMPLATE_PATHS: Record<string, string[]> = {
  Deployment: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

/** Returns the Pod that the object's controller would create, named `podName`. */
export function podFromObject(object: Json, podName: string): Json {
  const template = object.kind === 'Pod' ? object : TEMPLATE_PATHS[object.kind]?.reduce((node: Json | undefined, key) => node?.[key], object);
  if (template === undefined) {
    throw new Error(`Object of kind ${object.kind} has no pod template.`);
  }
  // Annotations only inform the injector and controllers; the pod runs the same without the long ones.
  const annotations = Object.fromEntries(Object.entries<string>(template.metadata?.annotations ?? {}).filter(([, value]) => value.length <= PODMAN_MAX_ANNOTATION_LENGTH));
  const spec = structuredClone(template.spec);
  if ((spec.restartPolicy ?? 'Always') === 'Always') {
    spec.restartPolicy = 'OnFailure';
  }
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: podName, labels: template.metadata?.labels ?? {}, annotations },
    spec,
  };
  scopeEmptyDirVolumes(pod, podName);
  return pod;
}

/**
 * Renames the pod's emptyDir volumes to `<podName>--<volume>` in place, and their mounts with them.
 * podman 4.3 plays an emptyDir as a named volume called after the volume, so two pods that use the
 * same name share its files, and `podman pod rm` keeps the volume while another pod still uses it.
 * Returns the new volume names.
 */
function scopeEmptyDirVolumes(pod: { spec?: PodSpecVolumes }, podName: string): string[] {
  const spec = pod.spec ?? {};
  const renamed = new Map<string, string>();
  for (const volume of spec.volumes ?? []) {
    if (volume.emptyDir !== undefined) {
      renamed.set(volume.name, `${podName}${EMPTY_DIR_SEPARATOR}${volume.name}`);
      volume.name = `${podName}${EMPTY_DIR_SEPARATOR}${volume.name}`;
    }
  }
  for (const container of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    for (const mount of container.volumeMounts ?? []) {
      mount.name = renamed.get(mount.name) ?? mount.name;
    }
  }
  return [...renamed.values()];
}

/** The parts of a pod spec that scopeEmptyDirVolumes reads and renames. */
interface PodSpecVolumes {
  volumes?: { name: string; emptyDir?: unknown }[];
  initContainers?: { volumeMounts?: { name: string }[] }[];
  containers?: { volumeMounts?: { name: string }[] }[];
}


export interface ConfigMapSources {
  configMaps: Json[];
  /** SidecarSetResourceBindings, which grant a SidecarSet's volumes access to another namespace. */
  bindings: Json[];
  sidecarSets: Json[];
}

/**
 * Resolves configMap volumes against the given ConfigMaps and writes their keys as files under
 * `hostDir`. A `namespace/name` reference, which only platforms with SidecarSetResourceBinding
 * support, is honoured when a binding in that namespace grants it to the SidecarSet that declares
 * the volume.
 */
export function resolveConfigMapVolumes(pod: Json, sources: ConfigMapSources, hostDir: string): void {
  const volumes: Json[] = pod.spec.volumes ?? [];
  for (const volume of volumes.filter((candidate) => candidate.configMap)) {
    const configMap = findConfigMap(volume, sources);
    const directory = path.join(hostDir, volume.name);
    mkdirSync(directory, { recursive: true });
    for (const [key, value] of Object.entries<string>(configMap.data ?? {})) {
      writeFileSync(path.join(directory, key), value);
    }
    delete volume.configMap;
    volume.hostPath = { path: directory, type: 'Directory' };
    replaceSubPathMounts(pod, volume.name, directory);
  }
}

function findConfigMap(volume: Json, sources: ConfigMapSources): Json {
  const reference: string = volume.configMap.name;
  const [namespace, name] = reference.includes('/') ? reference.split('/', 2) : [undefined, reference];
  if (namespace !== undefined) {
    assertBindingGrants(namespace!, name!, volume.name, sources);
  }

  const found = sources.configMaps.find((candidate) => candidate.metadata?.name === name && (namespace === undefined || (candidate.metadata?.namespace ?? 'default') === namespace));
  if (found === undefined) {
    throw new Error(`ConfigMap ${reference} of volume ${volume.name} not found among the example's ConfigMaps.`);
  }
  return found;
}

function assertBindingGrants(namespace: string, name: string, volumeName: string, sources: ConfigMapSources): void {
  const owners = sources.sidecarSets.filter((set) => (set.spec?.volumes ?? []).some((volume: Json) => volume.name === volumeName)).map((set) => set.metadata?.name);
  const granted = sources.bindings.some(
    (binding) =>
      (binding.metadata?.namespace ?? 'default') === namespace &&
      (binding.spec?.subjects ?? []).some((subject: Json) => subject.kind === 'SidecarSet' && owners.includes(subject.name)) &&
      (binding.spec?.resourceRefs ?? []).some((ref: Json) => ref.kind === 'ConfigMap' && ref.name === name),
  );
  if (!granted) {
    throw new Error(`Volume ${volumeName} refers to ConfigMap ${namespace}/${name} in another namespace, and no SidecarSetResourceBinding in ${namespace} grants it.`);
  }
}

/** Replaces mounts of one key (`subPath`) by a hostPath volume of that file, which podman mounts as a file. */
function replaceSubPathMounts(pod: Json, volumeName: string, directory: string): void {
  const containers: Json[] = [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
  for (const container of containers) {
    for (const mount of container.volumeMounts ?? []) {
      if (mount.name !== volumeName || !mount.subPath) {
        continue;
      }
      const fileVolume = `${volumeName}-${mount.subPath.replace(/[^a-z0-9-]/gi, '-').toLowerCase()}`;
      if (!pod.spec.volumes.some((volume: Json) => volume.name === fileVolume)) {
        pod.spec.volumes.push({ name: fileVolume, hostPath: { path: path.join(directory, mount.subPath), type: 'File' } });
      }
      mount.name = fileVolume;
      delete mount.subPath;
    }
  }
}
