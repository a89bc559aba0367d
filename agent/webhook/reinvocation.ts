/**
 * Support for reinvocation: with `reinvocationPolicy: IfNeeded` the API server calls the webhook
 * again after a later webhook, such as OpenKruise's SidecarSet webhook, changed the pod. Such a pod
 * already has tandem-init but also regular containers that tandem has not wrapped. The webhook then
 * removes tandem from the pod and injects it again, so that the result equals what injectTandem
 * returns for a pod that had every container from the start.
 *
 * NOTE: removeTandem inverts the layout that injectTandem in agent/inject/transform.ts writes (the
 * supervise command prefix, the three supervisor mounts under /tandem, tandem-init and the three
 * emptyDir volumes). The round-trip test in test/agent/webhook-mutate.test.ts fails when the two
 * drift apart.
 */
import type { Container, PodTemplateSpec, VolumeMount } from '../inject/k8s.js';
import { INIT_CONTAINER_NAME, LOGS_VOLUME, SHARED_DIR, SHARED_VOLUME, STATE_VOLUME } from '../inject/transform.js';

/** The binary that every wrapped container runs, as tandem-init installs it. */
const INSTALLED_BINARY = `${SHARED_DIR}/bin/tandem`;
const TANDEM_VOLUMES = new Set([SHARED_VOLUME, STATE_VOLUME, LOGS_VOLUME]);

/** Tells whether a regular container runs under `tandem supervise`. */
export function isWrappedContainer(container: Container): boolean {
  return Array.isArray(container.command) && container.command[0] === INSTALLED_BINARY && container.command[1] === 'supervise';
}

/** Lists the regular containers of an injected template that do not run under tandem. */
export function unwrappedContainers(template: PodTemplateSpec): string[] {
  return template.spec.containers.filter((container) => !isWrappedContainer(container)).map((container) => container.name);
}

// A supervisor mount is one of tandem's volumes mounted under /tandem. A stdlog mount that the
// injector renamed to tandem's log volume keeps its own path outside /tandem, so it stays.
function isSupervisorMount(mount: VolumeMount): boolean {
  const path = mount.mountPath?.replace(/\/+$/, '');
  return TANDEM_VOLUMES.has(mount.name) && (path === SHARED_DIR || (path?.startsWith(`${SHARED_DIR}/`) ?? false));
}

// The wrapped container's args are its original argv, so running them as `command` gives the same
// argv again. Strings that came from an image config are already escaped for $(VAR) expansion, and
// a container with a command gets no further escaping, so they stay as they are.
function unwrapContainer(container: Container): Container {
  const { command: _command, args, volumeMounts, ...rest } = container;
  const unwrapped: Container = { ...rest, command: [...(args ?? [])] };
  const mounts = (volumeMounts ?? []).filter((mount) => !isSupervisorMount(mount));
  if (mounts.length > 0) {
    unwrapped.volumeMounts = mounts;
  }
  return unwrapped;
}

/**
 * Returns a copy of an injected template without tandem: no tandem-init, no tandem volumes, and
 * every wrapped container back to its original argv. Containers that tandem has not wrapped stay
 * as they are. Mounts of stdlog volumes that the injector moved to tandem's log volume keep that
 * volume name, which injectTandem adds again.
 */
export function removeTandem(template: PodTemplateSpec): PodTemplateSpec {
  const result = structuredClone(template);
  const spec = result.spec;

  const initContainers = (spec.initContainers ?? []).filter((container) => container.name !== INIT_CONTAINER_NAME);
  if (initContainers.length > 0) {
    spec.initContainers = initContainers;
  } else {
    delete spec.initContainers;
  }

  spec.containers = spec.containers.map((container) => (isWrappedContainer(container) ? unwrapContainer(container) : container));
  spec.volumes = (spec.volumes ?? []).filter((volume) => !(TANDEM_VOLUMES.has(volume.name) && volume.emptyDir !== undefined));
  return result;
}
