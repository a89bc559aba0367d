/**
 * A checker for the Pod Security Standards "restricted" profile, limited to the rules that an
 * injection can change: volume types, host namespaces and ports, privileged containers, privilege
 * escalation, running as non-root, seccomp and capabilities. The rules follow the profile's table on
 * https://kubernetes.io/docs/concepts/security/pod-security-standards/ (policy version latest).
 *
 * NOTE: it skips the rules that no injection touches (AppArmor, SELinux, /proc mount type, sysctls,
 * Windows HostProcess), so a pod it accepts may still fail the API server's Pod Security admission.
 */

import type { Container, KubePodSpec, SecurityContext } from './k8s.js';
import { isRecord } from './k8s.js';

/** Volume sources the restricted profile allows. Every other source, hostPath included, is rejected. */
const ALLOWED_VOLUME_SOURCES: ReadonlySet<string> = new Set([
  'configMap',
  'csi',
  'downwardAPI',
  'emptyDir',
  'ephemeral',
  'persistentVolumeClaim',
  'projected',
  'secret',
]);

const ALLOWED_SECCOMP_TYPES: ReadonlySet<string> = new Set(['RuntimeDefault', 'Localhost']);

/** The only capability that a restricted container may add. */
const ALLOWED_ADDED_CAPABILITY = 'NET_BIND_SERVICE';

interface PodSecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  seccompProfile?: { type?: string };
  [field: string]: unknown;
}

function podSecurityContext(spec: KubePodSpec): PodSecurityContext {
  return isRecord(spec.securityContext) ? (spec.securityContext as PodSecurityContext) : {};
}

function allContainers(spec: KubePodSpec): Container[] {
  const ephemeral = Array.isArray(spec.ephemeralContainers) ? (spec.ephemeralContainers as Container[]) : [];
  return [...(spec.initContainers ?? []), ...spec.containers, ...ephemeral];
}

/**
 * Lists the restricted-profile violations of one container, taking the pod-level securityContext
 * into account where Kubernetes lets it stand in for the container's own setting.
 */
export function restrictedContainerViolations(spec: KubePodSpec, container: Container): string[] {
  const pod = podSecurityContext(spec);
  const context: SecurityContext = container.securityContext ?? {};
  const subject = `container ${container.name}`;
  const violations: string[] = [];

  if (context.privileged === true) {
    violations.push(`${subject} sets securityContext.privileged: true`);
  }
  if (context.allowPrivilegeEscalation !== false) {
    violations.push(`${subject} must set securityContext.allowPrivilegeEscalation: false`);
  }

  // The container's runAsNonRoot overrides the pod's, so an explicit false fails even under a pod-level true.
  const runAsNonRoot = context.runAsNonRoot ?? pod.runAsNonRoot;
  if (runAsNonRoot !== true) {
    violations.push(`${subject} must set securityContext.runAsNonRoot: true, or the pod must`);
  }
  if (context.runAsUser === 0) {
    violations.push(`${subject} sets securityContext.runAsUser: 0`);
  }

  const seccompType = context.seccompProfile?.type ?? pod.seccompProfile?.type;
  if (seccompType === undefined || !ALLOWED_SECCOMP_TYPES.has(seccompType)) {
    violations.push(`${subject} must set securityContext.seccompProfile.type to RuntimeDefault or Localhost, or the pod must`);
  }

  const drop = context.capabilities?.drop ?? [];
  if (!drop.includes('ALL')) {
    violations.push(`${subject} must drop capability ALL`);
  }
  const added = (context.capabilities?.add ?? []).filter((capability) => capability !== ALLOWED_ADDED_CAPABILITY);
  if (added.length > 0) {
    violations.push(`${subject} adds capabilities ${added.join(', ')}, but only ${ALLOWED_ADDED_CAPABILITY} is allowed`);
  }

  const hostPorts = (Array.isArray(container.ports) ? container.ports : []).flatMap((port: unknown) =>
    isRecord(port) && typeof port.hostPort === 'number' && port.hostPort !== 0 ? [port.hostPort] : [],
  );
  if (hostPorts.length > 0) {
    violations.push(`${subject} uses host ports ${hostPorts.join(', ')}`);
  }
  return violations;
}

/**
 * Lists every violation of the restricted profile's injection-relevant rules in a pod spec, as
 * messages such as `container app must drop capability ALL`. An empty list means the spec passes.
 */
export function restrictedViolations(spec: KubePodSpec): string[] {
  const violations: string[] = [];
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC'] as const) {
    if (spec[field] === true) {
      violations.push(`the pod sets ${field}: true`);
    }
  }

  const pod = podSecurityContext(spec);
  if (pod.runAsUser === 0) {
    violations.push('the pod sets securityContext.runAsUser: 0');
  }
  if (pod.seccompProfile?.type !== undefined && !ALLOWED_SECCOMP_TYPES.has(pod.seccompProfile.type)) {
    violations.push(`the pod sets securityContext.seccompProfile.type ${pod.seccompProfile.type}, expected RuntimeDefault or Localhost`);
  }

  for (const volume of spec.volumes ?? []) {
    const sources = Object.keys(volume).filter((key) => key !== 'name');
    const forbidden = sources.filter((source) => !ALLOWED_VOLUME_SOURCES.has(source));
    if (forbidden.length > 0) {
      violations.push(`volume ${volume.name} uses ${forbidden.join(', ')}, which the restricted profile does not allow`);
    }
  }

  for (const container of allContainers(spec)) {
    violations.push(...restrictedContainerViolations(spec, container));
  }
  return violations;
}

/**
 * Returns a warning when a pod spec met the restricted profile before injection and no longer does
 * after it, naming the new violations, or undefined otherwise.
 */
export function restrictedRegressionWarning(before: KubePodSpec, after: KubePodSpec, owner: string): string | undefined {
  if (restrictedViolations(before).length > 0) {
    return undefined;
  }
  const violations = restrictedViolations(after);
  if (violations.length === 0) {
    return undefined;
  }
  return (
    `${owner} met the Pod Security Standards "restricted" profile before injection but not after: ${violations.join('; ')}. ` +
    'Give the containers a SidecarSet added a restricted securityContext, or report a bug in tandem if the violation is in tandem-init or its volumes.'
  );
}
