import type { Container, LabelSelector, LocalObjectReference, ObjectMeta, Volume } from '../k8s.js';

/** The parts of OpenKruise's `apps.kruise.io/v1alpha1` SidecarSet that the injector applies. */

export type PodInjectPolicy = 'BeforeAppContainer' | 'AfterAppContainer';

/** One entry of `transferEnv`: env variables copied from an app container into the sidecar. */
export interface TransferEnvVar {
  sourceContainerName?: string;
  sourceContainerNameFrom?: { fieldRef?: { apiVersion?: string; fieldPath: string } };
  envName?: string;
  envNames?: string[];
}

/** A container of the SidecarSet: a core/v1 Container plus Kruise's injection fields. */
export interface SidecarContainer extends Container {
  podInjectPolicy?: PodInjectPolicy;
  upgradeStrategy?: { upgradeType?: string; hotUpgradeEmptyImage?: string };
  /** `enabled` mounts the app containers' volumeMounts into the sidecar too. */
  shareVolumePolicy?: { type?: string };
  transferEnv?: TransferEnvVar[];
}

/** Fields of a SidecarContainer that are not part of core/v1 Container, so they never reach a pod. */
export const SIDECAR_ONLY_FIELDS = [
  'podInjectPolicy',
  'upgradeStrategy',
  'shareVolumePolicy',
  'shareVolumeDevicePolicy',
  'transferEnv',
  'resourcesPolicy',
] as const;

export interface PatchPodMetadata {
  annotations?: Record<string, string>;
  /** `Retain` (the default), `Overwrite` or `MergePatchJson`. */
  patchPolicy?: string;
}

export interface SidecarSetSpec {
  selector?: LabelSelector;
  namespace?: string;
  /** A label selector over namespaces; newer Kruise versions also accept a list of names. */
  namespaceSelector?: LabelSelector & { namespaces?: string[] };
  initContainers?: SidecarContainer[];
  containers?: SidecarContainer[];
  volumes?: Volume[];
  updateStrategy?: Record<string, unknown>;
  injectionStrategy?: { paused?: boolean; revision?: Record<string, unknown> };
  imagePullSecrets?: LocalObjectReference[];
  patchPodMetadata?: PatchPodMetadata[];
}

export interface SidecarSet {
  apiVersion: string;
  kind: 'SidecarSet';
  metadata: ObjectMeta & { name: string };
  spec: SidecarSetSpec;
  status?: { latestRevision?: string; [field: string]: unknown };
}

/** A SidecarSet with the file it came from, for messages. */
export interface LoadedSidecarSet {
  sidecarSet: SidecarSet;
  source: string;
}
