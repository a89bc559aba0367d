import { InjectError } from '../errors.js';
import { matchesLabelSelector, selectorKeys } from './selector.js';
import type { SidecarSet } from './types.js';

/** Label that Kubernetes 1.21 and later sets on every namespace, with the namespace's name. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/** Pod facts that decide whether a SidecarSet applies. */
export interface PodIdentity {
  /** Namespace of the pod; the caller has already turned an empty one into `default`. */
  namespace: string;
  labels: Readonly<Record<string, string>>;
  owner: string;
}

/**
 * Labels of the namespaces that Namespace objects in the input define. A namespace without such
 * an object only has the label Kubernetes sets itself, `kubernetes.io/metadata.name`.
 */
export type NamespaceLabels = ReadonlyMap<string, Readonly<Record<string, string>>>;

function namespaceMatches(sidecarSet: SidecarSet, pod: PodIdentity, namespaceLabels: NamespaceLabels): boolean {
  const { namespace, namespaceSelector } = sidecarSet.spec;
  if (namespace !== undefined && namespace !== '' && namespace !== pod.namespace) {
    return false;
  }
  if (namespaceSelector === undefined) {
    return true;
  }

  const { namespaces, ...labelSelector } = namespaceSelector;
  if (namespaces !== undefined && namespaces.length > 0) {
    return namespaces.includes(pod.namespace);
  }

  const known = namespaceLabels.get(pod.namespace);
  if (known === undefined) {
    const unknownKeys = selectorKeys(labelSelector).filter((key) => key !== NAMESPACE_NAME_LABEL);
    if (unknownKeys.length > 0) {
      throw new InjectError(
        `SidecarSet ${sidecarSet.metadata.name} selects namespaces by label ${unknownKeys.join(', ')}, but the labels of namespace ` +
          `${pod.namespace} (of ${pod.owner}) are unknown offline. Add the Namespace object to the input, or select by ${NAMESPACE_NAME_LABEL}.`,
      );
    }
  }
  return matchesLabelSelector(labelSelector, { ...known, [NAMESPACE_NAME_LABEL]: pod.namespace });
}

/**
 * Returns whether a SidecarSet applies to a pod, as Kruise's pod webhook decides it: the
 * SidecarSet is not paused, `spec.namespace` and `spec.namespaceSelector` admit the pod's
 * namespace, and `spec.selector` matches the pod's labels.
 */
export function sidecarSetMatchesPod(sidecarSet: SidecarSet, pod: PodIdentity, namespaceLabels: NamespaceLabels): boolean {
  if (sidecarSet.spec.injectionStrategy?.paused === true) {
    return false;
  }
  if (!namespaceMatches(sidecarSet, pod, namespaceLabels)) {
    return false;
  }
  return matchesLabelSelector(sidecarSet.spec.selector!, pod.labels);
}
