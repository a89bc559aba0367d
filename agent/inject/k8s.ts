/**
 * The parts of the Kubernetes API objects that the injector reads or writes. Every interface keeps an
 * index signature, so fields the injector does not know pass through unchanged.
 */

import { InjectError } from './errors.js';

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
  [field: string]: unknown;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
  subPath?: string;
  subPathExpr?: string;
  [field: string]: unknown;
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  seccompProfile?: { type: string; localhostProfile?: string };
  [field: string]: unknown;
}

export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  volumeMounts?: VolumeMount[];
  securityContext?: SecurityContext;
  /** `Always` on an init container makes it a native sidecar (Kubernetes 1.28 and later). */
  restartPolicy?: string;
  [field: string]: unknown;
}

export interface Volume {
  name: string;
  emptyDir?: Record<string, unknown>;
  csi?: { driver?: string; [field: string]: unknown };
  [field: string]: unknown;
}

export interface LocalObjectReference {
  name?: string;
  [field: string]: unknown;
}

/** `core/v1 PodSpec`, named apart from tandem's own pod spec in supervisor/protocol/pod.ts. */
export interface KubePodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: Volume[];
  imagePullSecrets?: LocalObjectReference[];
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
  [field: string]: unknown;
}

export interface PodTemplateSpec {
  metadata?: ObjectMeta;
  spec: KubePodSpec;
}

export interface LabelSelectorRequirement {
  key: string;
  operator: string;
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

/** Any object of a manifest, as parsed from YAML or JSON. */
export type KubeObject = Record<string, unknown>;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// Describes a value for a message by its type, and a scalar also by its value. Strings are cut at
// 40 characters.
function describeValue(value: unknown): string {
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (isRecord(value)) {
    return 'a mapping';
  }
  if (value === null || value === undefined) {
    return 'nothing';
  }
  if (typeof value === 'string') {
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  }
  return `the ${typeof value} ${String(value)}`;
}

function describeTypeField(object: Record<string, unknown>, field: 'apiVersion' | 'kind'): string | undefined {
  const value = object[field];
  if (value === undefined || value === null) {
    return `${field} is missing`;
  }
  if (typeof value !== 'string') {
    return `${field} is ${describeValue(value)} instead of a string`;
  }
  return value === '' ? `${field} is empty` : undefined;
}

/**
 * Returns a manifest document or List item as a Kubernetes object, which must be a mapping with
 * non-empty string `apiVersion` and `kind`, as the API server requires. Otherwise it throws an
 * InjectError whose message starts with `subject`, such as `Document 2 of 3 in app.yaml`.
 */
export function requireKubernetesObject(value: unknown, subject: string): KubeObject {
  if (!isRecord(value)) {
    throw new InjectError(
      `${subject} is not a Kubernetes object: expected a mapping with apiVersion and kind, found ${describeValue(value)}. Pass only Kubernetes manifests, in YAML or JSON.`,
    );
  }
  const problems = [describeTypeField(value, 'apiVersion'), describeTypeField(value, 'kind')].filter((problem) => problem !== undefined);
  if (problems.length > 0) {
    throw new InjectError(
      `${subject} is not a Kubernetes object: ${problems.join(' and ')}. Set apiVersion and kind, such as apiVersion: v1 and kind: Pod.`,
    );
  }
  return value;
}

/** Returns `Kind/name`, adding the namespace when the object has one, for messages. */
export function describeObject(object: KubeObject): string {
  const kind = typeof object.kind === 'string' ? object.kind : 'object without kind';
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : '(unnamed)';
  const namespace = typeof metadata.namespace === 'string' ? ` in namespace ${metadata.namespace}` : '';
  return `${kind}/${name}${namespace}`;
}

/** Returns the value of a literal env variable. Later entries win, as in the kubelet. */
export function literalEnvValue(container: Container, name: string): string | undefined {
  let value: string | undefined;
  for (const variable of container.env ?? []) {
    if (variable.name === name) {
      value = variable.valueFrom === undefined ? (variable.value ?? '') : undefined;
    }
  }
  return value;
}

/** Returns the env entry that defines `name` last, or undefined. */
export function findEnvVar(container: Container, name: string): EnvVar | undefined {
  const matches = (container.env ?? []).filter((variable) => variable.name === name);
  return matches.at(-1);
}

/**
 * Sets `spec.initContainers`. A spec without the field gets it just before `containers`, where
 * readers expect it, instead of at the end.
 */
export function setInitContainers(spec: KubePodSpec, initContainers: Container[]): KubePodSpec {
  if (Object.hasOwn(spec, 'initContainers')) {
    spec.initContainers = initContainers;
    return spec;
  }
  const ordered: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec)) {
    if (key === 'containers') {
      ordered.initContainers = initContainers;
    }
    ordered[key] = value;
  }
  return ordered as KubePodSpec;
}
