import type { PodSpec, RestartPolicy } from '../../supervisor/protocol/pod.js';
import { escapeExpansion, imageConfigNeed, originalArgv, type ImageConfig } from './argv.js';
import { InjectError } from './errors.js';
import { setInitContainers, type Container, type PodTemplateSpec, type Volume, type VolumeMount } from './k8s.js';
import { describeContainers } from './roles.js';
import { replaceStdlogVolumes } from './stdlog.js';

export const INIT_CONTAINER_NAME = 'tandem-init';
export const INJECT_ANNOTATION = 'tandem.dev/inject';

/** Volumes shared by tandem-init and every supervisor: the binary, the pod state and the logs. */
export const SHARED_VOLUME = 'tandem';
export const STATE_VOLUME = 'tandem-state';
export const LOGS_VOLUME = 'tandem-logs';
export const SHARED_DIR = '/tandem';

/** The tandem binary inside the tandem image, and where tandem-init installs it. */
const IMAGE_BINARY = '/opt/tandem/bin/tandem';
const INSTALLED_BINARY = `${SHARED_DIR}/bin/tandem`;

const VALID_RESTART_POLICIES: readonly RestartPolicy[] = ['Always', 'OnFailure', 'Never'];

export interface TransformOptions {
  /** Image of tandem-init, which contains the tandem binary. */
  image: string;
  /** Leaves stdlog CSI volumes as they are instead of moving their mounts to tandem's log volume. */
  keepStdlog: boolean;
  /** Image configs of the regular containers that set no command, by container name. */
  imageConfigs: ReadonlyMap<string, ImageConfig>;
  /** The object that contains the template, for messages. */
  owner: string;
}

export type TransformResult =
  | { status: 'injected'; template: PodTemplateSpec; podSpec: PodSpec; removedStdlogVolumes: string[]; warnings: string[] }
  | { status: 'already injected' | 'disabled'; template: PodTemplateSpec };

/**
 * Tells whether the template already carries tandem: an init container named tandem-init that runs
 * `tandem install` from the tandem image. A user's own container of that name does not count, so
 * checkConflicts rejects it instead of the template passing as injected.
 */
export function isTandemInjected(template: PodTemplateSpec): boolean {
  return (template.spec.initContainers ?? []).some(
    (container) => container.name === INIT_CONTAINER_NAME && Array.isArray(container.command) && container.command[0] === IMAGE_BINARY && container.command[1] === 'install',
  );
}

/** Reads the `tandem.dev/inject` opt-out. Any value other than `enabled` or `disabled` is an error. */
export function isInjectionDisabled(template: PodTemplateSpec, owner: string): boolean {
  const value = template.metadata?.annotations?.[INJECT_ANNOTATION];
  if (value === undefined || value === 'enabled') {
    return false;
  }
  if (value === 'disabled') {
    return true;
  }
  throw new InjectError(`Invalid annotation ${INJECT_ANNOTATION} ${JSON.stringify(value)} in ${owner}: expected enabled or disabled.`);
}

/** Lists the regular containers whose command line depends on their image config. */
export function containersNeedingImageConfig(template: PodTemplateSpec): Container[] {
  return template.spec.containers.filter((container) => imageConfigNeed(container) !== 'none');
}

function supervisorMounts(): VolumeMount[] {
  return [
    { name: SHARED_VOLUME, mountPath: SHARED_DIR, readOnly: true },
    { name: STATE_VOLUME, mountPath: `${SHARED_DIR}/state` },
    { name: LOGS_VOLUME, mountPath: `${SHARED_DIR}/logs` },
  ];
}

// Rejects templates that already use tandem's container name, volume names or mount paths, which
// tandem would otherwise shadow or duplicate.
function checkConflicts(template: PodTemplateSpec, owner: string): void {
  for (const [field, containers] of [['initContainers', template.spec.initContainers ?? []], ['containers', template.spec.containers]] as const) {
    if (containers.some((container) => container.name === INIT_CONTAINER_NAME)) {
      throw new InjectError(
        `${owner} already has a container named ${INIT_CONTAINER_NAME} in ${field}, which tandem reserves for its init container. Rename the container.`,
      );
    }
  }
  const reserved = new Set([SHARED_VOLUME, STATE_VOLUME, LOGS_VOLUME]);
  for (const volume of template.spec.volumes ?? []) {
    if (reserved.has(volume.name)) {
      throw new InjectError(`${owner} already has a volume named ${volume.name}, which tandem reserves. Rename the volume.`);
    }
  }
  for (const container of [...(template.spec.initContainers ?? []), ...template.spec.containers]) {
    for (const mount of container.volumeMounts ?? []) {
      const path = mount.mountPath?.replace(/\/+$/, '');
      if (path === SHARED_DIR || path?.startsWith(`${SHARED_DIR}/`)) {
        throw new InjectError(
          `Container ${container.name} in ${owner} mounts volume ${mount.name} at ${mount.mountPath}, inside ${SHARED_DIR}, which tandem reserves. Move the mount.`,
        );
      }
    }
  }
}

function parseRestartPolicy(value: string | undefined, owner: string): RestartPolicy {
  const policy = value ?? 'Always';
  if (!VALID_RESTART_POLICIES.includes(policy as RestartPolicy)) {
    throw new InjectError(`Invalid restartPolicy ${JSON.stringify(policy)} in ${owner}: expected Always, OnFailure or Never.`);
  }
  return policy as RestartPolicy;
}

function parseGracePeriod(value: unknown, owner: string): number {
  if (value === undefined || value === null) {
    return 30;
  }
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InjectError(`Invalid terminationGracePeriodSeconds ${JSON.stringify(value)} in ${owner}: expected an integer >= 0.`);
  }
  return value;
}

// Rebuilds the container with name, image, command and args first, so the wrapped command reads
// in the order Kubernetes documents it, and every other field after them unchanged.
function wrapContainer(container: Container, command: string[], args: string[]): Container {
  const { name, image, command: _command, args: _args, volumeMounts, ...rest } = container;
  const wrapped: Container = { name };
  if (image !== undefined) {
    wrapped.image = image;
  }
  wrapped.command = command;
  wrapped.args = args;
  Object.assign(wrapped, rest);
  wrapped.volumeMounts = [...(volumeMounts ?? []), ...supervisorMounts()];
  return wrapped;
}

function initContainer(image: string, podSpec: PodSpec): Container {
  return {
    name: INIT_CONTAINER_NAME,
    image,
    // The kubelet expands $(VAR) in command strings, and readiness checks come from annotations.
    command: [IMAGE_BINARY, 'install', SHARED_DIR, '--pod-json', escapeExpansion(JSON.stringify(podSpec))],
    volumeMounts: supervisorMounts().map(({ readOnly: _readOnly, ...mount }) => mount),
    // Meets the Pod Security Standards "restricted" profile, so the pod's namespace policy decides.
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65534,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
      readOnlyRootFilesystem: true,
    },
  };
}

/**
 * Adds tandem to a pod template and returns the new template, leaving the input unchanged.
 * Every regular container runs under `tandem supervise` with its original argv, tandem-init goes
 * first among the init containers and writes tandem's pod spec, and stdlog CSI volumes move to
 * tandem's log volume unless `keepStdlog` is set. A template that already carries tandem (see
 * isTandemInjected), or that opts out with `tandem.dev/inject: disabled`, comes back unchanged.
 */
export function injectTandem(input: PodTemplateSpec, options: TransformOptions): TransformResult {
  const { owner } = options;
  if (isTandemInjected(input)) {
    return { status: 'already injected', template: input };
  }
  if (isInjectionDisabled(input, owner)) {
    return { status: 'disabled', template: input };
  }

  const template = structuredClone(input);
  const spec = template.spec;
  checkConflicts(template, owner);

  const annotations = template.metadata?.annotations ?? {};
  const podSpec: PodSpec = {
    version: 1,
    restartPolicy: parseRestartPolicy(spec.restartPolicy, owner),
    terminationGracePeriodSeconds: parseGracePeriod(spec.terminationGracePeriodSeconds, owner),
    containers: describeContainers(spec.containers, annotations, owner),
  };

  const removedStdlogVolumes = options.keepStdlog ? [] : replaceStdlogVolumes(spec, LOGS_VOLUME);

  spec.containers = spec.containers.map((container, index) => {
    const entry = podSpec.containers[index]!;
    const argv = originalArgv(container, options.imageConfigs.get(container.name), owner);
    const command = [
      INSTALLED_BINARY,
      'supervise',
      '--name',
      entry.name,
      '--role',
      entry.role,
      '--priority',
      String(entry.priority),
      '--shared-dir',
      SHARED_DIR,
      ...stopSignalArgs(container),
      '--',
    ];
    return wrapContainer(container, command, argv);
  });

  template.spec = setInitContainers(spec, [initContainer(options.image, podSpec), ...(spec.initContainers ?? [])]);

  const volumes: Volume[] = [
    { name: SHARED_VOLUME, emptyDir: {} },
    { name: STATE_VOLUME, emptyDir: {} },
    { name: LOGS_VOLUME, emptyDir: {} },
  ];
  template.spec.volumes = [...(template.spec.volumes ?? []), ...volumes];

  return { status: 'injected', template, podSpec, removedStdlogVolumes, warnings: initContainerWarnings(input, podSpec, owner) };
}

/**
 * Passes the container's `lifecycle.stopSignal` (Kubernetes 1.33 and later) to the supervisor, which
 * then sends that signal to the command when it stops it. The runtime sends the signal to PID 1,
 * which is tandem's now, so without this the command would get SIGTERM.
 */
function stopSignalArgs(container: Container): string[] {
  const lifecycle = container.lifecycle as { stopSignal?: unknown } | undefined;
  return typeof lifecycle?.stopSignal === 'string' && lifecycle.stopSignal !== '' ? ['--stop-signal', lifecycle.stopSignal] : [];
}

/**
 * Warns when the pod has init containers of its own and sidecars: init containers run to
 * completion before any regular container starts, so one that needs a sidecar (a proxy, a secret
 * agent) would wait for it forever. Kubernetes' native sidecars (init containers with
 * `restartPolicy: Always`) start before later init containers and are left as they are.
 */
function initContainerWarnings(input: PodTemplateSpec, podSpec: PodSpec, owner: string): string[] {
  const initContainers = (input.spec.initContainers ?? []).filter((container) => container.restartPolicy !== 'Always').map((container) => container.name);
  const sidecars = podSpec.containers.filter((container) => container.role === 'sidecar').map((container) => container.name);
  if (initContainers.length === 0 || sidecars.length === 0) {
    return [];
  }
  return [
    `${owner}: init containers ${initContainers.join(', ')} run before sidecars ${sidecars.join(', ')} start, so they cannot use them. ` +
      'If an init container needs a sidecar, move its work into an app container or run the sidecar as a native sidecar (an init container with restartPolicy: Always).',
  ];
}
