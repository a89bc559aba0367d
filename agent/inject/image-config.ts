import { execFile } from 'node:child_process';
import { InjectError } from './errors.js';
import type { ImageConfig, ImageConfigNeed } from './argv.js';
import { PullPolicyResolver } from './registry/pull-policy.js';
import { RegistryResolver, type RegistryResolverOptions } from './registry/resolver.js';

export const ENTRYPOINT_ANNOTATION_PREFIX = 'entrypoint.tandem.dev/';
export const CMD_ANNOTATION_PREFIX = 'cmd.tandem.dev/';

/** A container whose command line depends on its image config. */
export interface ImageConfigRequest {
  containerName: string;
  image: string;
  need: Exclude<ImageConfigNeed, 'none'>;
  /** Annotations of the pod template. */
  annotations: Readonly<Record<string, string>>;
  /** The object that contains the template, for messages. */
  owner: string;
  /** Namespace of the pod, to match the pull Secrets given with --registry-auth. */
  namespace?: string;
  /** Names in the pod's imagePullSecrets, whose credentials the registry resolver tries first. */
  imagePullSecrets?: readonly string[];
  /** The container's imagePullPolicy, which decides whether the registry or the local store is asked first. */
  imagePullPolicy?: string;
}

export type ImageConfigResult = { found: true; config: ImageConfig } | { found: false; reason: string };

/** One source of image configs. */
export interface ImageConfigResolver {
  resolve(request: ImageConfigRequest): Promise<ImageConfigResult>;
}

function parseStringArray(text: string, annotation: string, owner: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new InjectError(
      `Invalid annotation ${annotation} in ${owner}: ${JSON.stringify(text)} is not a JSON array of strings. ` +
        `Write it like '["/bin/server", "--flag"]', or '[]' for an image without one.`,
    );
  }
  return value as string[];
}

/**
 * Reads `entrypoint.tandem.dev/<container>` and `cmd.tandem.dev/<container>` from the pod
 * template. The ENTRYPOINT annotation is required. A missing CMD annotation means an empty CMD.
 */
export class AnnotationResolver implements ImageConfigResolver {
  async resolve(request: ImageConfigRequest): Promise<ImageConfigResult> {
    const entrypointKey = `${ENTRYPOINT_ANNOTATION_PREFIX}${request.containerName}`;
    const cmdKey = `${CMD_ANNOTATION_PREFIX}${request.containerName}`;
    const entrypointText = request.annotations[entrypointKey];
    const cmdText = request.annotations[cmdKey];

    if (entrypointText === undefined) {
      const hint = cmdText === undefined ? '' : ` (${cmdKey} is set, but the ENTRYPOINT annotation is needed too; use '[]' if the image has none)`;
      return { found: false, reason: `the pod template has no annotation ${entrypointKey}${hint}` };
    }

    const entrypoint = parseStringArray(entrypointText, entrypointKey, request.owner);
    const cmd = cmdText === undefined ? [] : parseStringArray(cmdText, cmdKey, request.owner);
    const source = cmdText === undefined ? `annotation ${entrypointKey}` : `annotations ${entrypointKey} and ${cmdKey}`;
    return { found: true, config: { entrypoint, cmd, source } };
  }
}

interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit code, or undefined when the program could not be started. */
  exitCode: number | undefined;
  /** Error code from spawn, such as ENOENT when the program is not installed. */
  spawnError?: string;
}

function run(program: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(program, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error === null) {
        resolve({ stdout, stderr, exitCode: 0 });
        return;
      }
      const code = (error as NodeJS.ErrnoException).code;
      if (typeof code === 'string') {
        resolve({ stdout, stderr, exitCode: undefined, spawnError: code });
        return;
      }
      resolve({ stdout, stderr, exitCode: typeof code === 'number' ? code : undefined, spawnError: error.killed ? 'timed out' : undefined });
    });
  });
}

function stringArrayOrEmpty(value: unknown): string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string') ? value : [];
}

/**
 * Reads ENTRYPOINT and CMD from the local image store with `podman image inspect --format json`.
 * It never pulls: an image that is not stored locally, or a host without podman, is a miss.
 * Results are cached per image, so each image is inspected once per run.
 */
export class PodmanResolver implements ImageConfigResolver {
  private readonly cache = new Map<string, Promise<ImageConfigResult>>();

  constructor(
    private readonly program = 'podman',
    private readonly timeoutMs = 30_000,
  ) {}

  resolve(request: ImageConfigRequest): Promise<ImageConfigResult> {
    let result = this.cache.get(request.image);
    if (result === undefined) {
      result = this.inspect(request.image);
      this.cache.set(request.image, result);
    }
    return result;
  }

  private async inspect(image: string): Promise<ImageConfigResult> {
    const result = await run(this.program, ['image', 'inspect', '--format', 'json', '--', image], this.timeoutMs);
    if (result.spawnError === 'ENOENT') {
      return { found: false, reason: `${this.program} is not installed, so the local image store was not searched` };
    }
    if (result.exitCode !== 0) {
      const detail = result.stderr.trim().split('\n').at(-1) || result.spawnError || `exit code ${result.exitCode}`;
      return { found: false, reason: `\`${this.program} image inspect ${image}\` failed: ${detail}` };
    }

    let parsed: unknown;
    try {
      parsed = JSON.parse(result.stdout);
    } catch {
      throw new InjectError(`\`${this.program} image inspect --format json ${image}\` printed output that is not JSON.`);
    }
    const [first] = Array.isArray(parsed) ? parsed : [];
    const config = (first as { Config?: { Entrypoint?: unknown; Cmd?: unknown } } | undefined)?.Config;
    if (config === undefined) {
      return { found: false, reason: `\`${this.program} image inspect ${image}\` returned no image config` };
    }
    return {
      found: true,
      config: {
        entrypoint: stringArrayOrEmpty(config.Entrypoint),
        cmd: stringArrayOrEmpty(config.Cmd),
        source: `local image store (${this.program})`,
      },
    };
  }
}

/** Asks each resolver in turn and returns the first config found, or the reason of every miss. */
export async function resolveImageConfig(request: ImageConfigRequest, resolvers: readonly ImageConfigResolver[]): Promise<ImageConfig> {
  const reasons: string[] = [];
  for (const resolver of resolvers) {
    const result = await resolver.resolve(request);
    if (result.found) {
      return result.config;
    }
    reasons.push(result.reason);
  }

  const missingFields = request.need === 'entrypoint' ? 'ENTRYPOINT' : 'ENTRYPOINT and CMD';
  const cmdHint = request.need === 'entrypoint' ? '' : ` and, if the image has a CMD, ${CMD_ANNOTATION_PREFIX}${request.containerName}: '["arg"]'`;
  throw new InjectError(
    `Cannot find the ${missingFields} of image ${request.image} for container ${request.containerName} in ${request.owner}, ` +
      `which sets no command: ${reasons.join('; ')}. tandem must know the exact command line and does not guess it. ` +
      `Add the pod template annotation ${ENTRYPOINT_ANNOTATION_PREFIX}${request.containerName}: '["/path/to/entrypoint"]' ` +
      `('[]' if the image has none)${cmdHint}, set the container's command, or pull the image with \`podman pull ${request.image}\`.`,
  );
}

/**
 * Returns the resolvers of the CLI. The pod's annotations always win, because they are the user's
 * explicit statement. The registry and the local podman store follow in the order of the container's
 * imagePullPolicy (see PullPolicyResolver), or the local store alone when `registry` is false.
 */
export function defaultResolvers(registry: RegistryResolverOptions | false = {}): ImageConfigResolver[] {
  if (registry === false) {
    return [new AnnotationResolver(), new PodmanResolver()];
  }
  return [new AnnotationResolver(), new PullPolicyResolver(new RegistryResolver(registry), new PodmanResolver())];
}
