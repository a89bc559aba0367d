import { InjectError } from './errors.js';
import type { Container } from './k8s.js';

/** ENTRYPOINT and CMD of an image, from its OCI config or from the pod's annotations. */
export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  /** Origin of the values, such as `annotation entrypoint.tandem.dev/web`, for the report. */
  source: string;
}

/** Part of the image config that a container's command line depends on. */
export type ImageConfigNeed = 'none' | 'entrypoint' | 'entrypoint and cmd';

// Kubernetes treats an empty list like a missing one: `command: []` still runs the image ENTRYPOINT.
function isSet(list: string[] | undefined): list is string[] {
  return Array.isArray(list) && list.length > 0;
}

export function imageConfigNeed(container: Container): ImageConfigNeed {
  if (isSet(container.command)) {
    return 'none';
  }
  return isSet(container.args) ? 'entrypoint' : 'entrypoint and cmd';
}

/**
 * Escapes a string so that the kubelet's `$(VAR)` expansion returns it unchanged. The kubelet
 * turns `$$` into `$` and replaces `$(NAME)` when NAME is defined, and leaves every other `$` alone,
 * so doubling each `$` that comes before `$` or `(` is exact.
 */
export function escapeExpansion(text: string): string {
  return text.replace(/\$(?=[$(])/g, '$$$$');
}

/**
 * Returns the argv the container runs, by the Kubernetes rules. It is `command` + `args` when
 * `command` is set, the image ENTRYPOINT + `args` when only `args` is set, and ENTRYPOINT + CMD when
 * neither is. Strings from the image are escaped for `$(VAR)` expansion, because the kubelet never
 * expanded them before and now they pass through the container's `args`. Strings from the pod are
 * kept as they are, so they are expanded exactly once, as before.
 */
export function originalArgv(container: Container, imageConfig: ImageConfig | undefined, owner: string): string[] {
  const need = imageConfigNeed(container);
  if (need === 'none') {
    return [...(container.command ?? []), ...(container.args ?? [])];
  }
  if (imageConfig === undefined) {
    throw new Error(`Internal error: originalArgv got no image config for container ${container.name} in ${owner}.`);
  }

  const entrypoint = imageConfig.entrypoint.map(escapeExpansion);
  const argv = need === 'entrypoint' ? [...entrypoint, ...(container.args ?? [])] : [...entrypoint, ...imageConfig.cmd.map(escapeExpansion)];
  if (argv.length === 0) {
    throw new InjectError(
      `Container ${container.name} in ${owner} has nothing to run: it sets no command or args, and image ${container.image ?? '(none)'} ` +
        `has an empty ENTRYPOINT and CMD (${imageConfig.source}). Set the container's command.`,
    );
  }
  return argv;
}
