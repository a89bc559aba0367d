import type { ImageConfigRequest, ImageConfigResolver, ImageConfigResult } from '../image-config.js';
import { RegistryClient, RegistryError } from './client.js';
import { RegistryCredentials, type PullingPod, type RegistryCredential } from './credentials.js';
import {
  DEFAULT_PLATFORM,
  DOCKER_CONFIG,
  formatPlatform,
  MANIFEST_ACCEPT,
  ManifestError,
  OCI_CONFIG,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  sha256Digest,
  verifyDigest,
  type EntrypointAndCmd,
  type Platform,
} from './manifest.js';
import { formatImageReference, parseImageReference, type ImageReference } from './reference.js';

export const DEFAULT_REGISTRY_TIMEOUT_MS = 10_000;
/** Largest manifest that the distribution registry accepts (4 MiB), so a larger one is not a manifest. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Largest image config read. Configs are a few kilobytes; a long build history stays far below this. */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
/** An index may point at another index; deeper nesting than this is taken for a loop. */
const MAX_INDEX_DEPTH = 3;

export interface RegistryResolverOptions {
  credentials?: RegistryCredentials;
  /** Platform to pick from an image index; linux/amd64 unless set. */
  platform?: Platform;
  /** Time limit of each HTTP request in milliseconds. */
  timeoutMs?: number;
  /** Registries (`host` or `host:port`) that may be reached over plain HTTP, besides loopback hosts. */
  insecureRegistries?: readonly string[];
}

interface ResolvedImage extends EntrypointAndCmd {
  /** Digest of the image manifest that was read, for the report. */
  manifestDigest: string;
}

/**
 * Reads ENTRYPOINT and CMD from the image's registry with the OCI distribution API: the manifest
 * (from an index, the entry of the configured platform), then the config blob. Failures that
 * another resolver may make up for (401, 403, 404, an unreachable registry, a timeout, an invalid
 * manifest) are misses whose reason names the image, the registry and the fix. Results are cached
 * per image reference, and config blobs per digest, for the life of the process.
 */
export class RegistryResolver implements ImageConfigResolver {
  private readonly client: RegistryClient;
  private readonly credentials: RegistryCredentials;
  private readonly platform: Platform;
  private readonly results = new Map<string, Promise<ImageConfigResult>>();
  private readonly configs = new Map<string, Promise<EntrypointAndCmd>>();

  constructor(options: RegistryResolverOptions = {}) {
    this.credentials = options.credentials ?? new RegistryCredentials();
    this.platform = options.platform ?? DEFAULT_PLATFORM;
    this.client = new RegistryClient({ timeoutMs: options.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS, insecureRegistries: options.insecureRegistries ?? [] });
  }

  /** Raises an InjectError for an image reference that the container runtime would reject too. */
  async resolve(request: ImageConfigRequest): Promise<ImageConfigResult> {
    const reference = parseImageReference(request.image);
    const pod: PullingPod = { namespace: request.namespace, imagePullSecrets: request.imagePullSecrets };
    const credentials = this.credentials.lookup(reference, pod);
    const key = [formatImageReference(reference), ...credentials.map((credential) => `${credential.origin} ${credential.username}`)].join('\n');

    let result = this.results.get(key);
    if (result === undefined) {
      result = this.lookup(reference, credentials, pod);
      this.results.set(key, result);
    }
    return await result;
  }

  private async lookup(reference: ImageReference, credentials: readonly RegistryCredential[], pod: PullingPod): Promise<ImageConfigResult> {
    const image = formatImageReference(reference);
    // RFC 6761 reserves .invalid for names that never resolve, so no lookup is sent for them.
    if (/(^|\.)invalid(:\d+)?$/i.test(reference.domain)) {
      return { found: false, reason: `registry ${reference.domain} of image ${image} is under the reserved domain .invalid, so it was not contacted` };
    }

    try {
      const resolved = await this.readImage(reference, credentials);
      return {
        found: true,
        config: {
          entrypoint: resolved.entrypoint,
          cmd: resolved.cmd,
          source: `registry ${reference.domain} (manifest ${resolved.manifestDigest}, ${formatPlatform(this.platform)})`,
        },
      };
    } catch (error) {
      if (error instanceof RegistryError) {
        return { found: false, reason: this.explain(error, reference, credentials, pod) };
      }
      if (error instanceof ManifestError) {
        return { found: false, reason: `registry ${reference.domain} returned an unusable image ${image}: ${error.message}` };
      }
      throw error;
    }
  }

  private async readImage(reference: ImageReference, credentials: readonly RegistryCredential[]): Promise<ResolvedImage> {
    const image = formatImageReference(reference);
    let target = reference.digest ?? reference.tag!;
    let expectedDigest = reference.digest;
    let what = `the manifest of ${image}`;

    for (let depth = 0; depth <= MAX_INDEX_DEPTH; depth += 1) {
      const fetched = await this.client.get(reference, `manifests/${target}`, MANIFEST_ACCEPT, credentials, MAX_MANIFEST_BYTES);
      if (expectedDigest !== undefined) {
        verifyDigest(fetched.body, expectedDigest, what);
      }
      const manifestDigest = expectedDigest ?? sha256Digest(fetched.body);
      const manifest = parseManifest(fetched.body, fetched.contentType, what);

      if (manifest.kind === 'image') {
        const configType = manifest.config.mediaType;
        if (configType !== undefined && configType !== OCI_CONFIG && configType !== DOCKER_CONFIG) {
          throw new ManifestError(`${what} has a config of media type ${configType}, so it is an artifact and not a container image`);
        }
        const config = await this.readConfig(reference, manifest.config.digest, credentials);
        return { ...config, manifestDigest };
      }

      const entry = selectPlatform(manifest.manifests, this.platform);
      if (entry === undefined) {
        const available = manifest.manifests.flatMap((descriptor) => (descriptor.platform === undefined ? [] : [formatPlatform(descriptor.platform)]));
        throw new ManifestError(
          `the image index of ${image} has no manifest for ${formatPlatform(this.platform)} (it has ${available.join(', ') || 'no platforms'}), ` +
            'so pick the platform of the nodes with --platform',
        );
      }
      target = entry.digest;
      expectedDigest = entry.digest;
      what = `the ${formatPlatform(this.platform)} manifest ${entry.digest} of ${image}`;
    }
    throw new ManifestError(`the image index of ${image} nests more than ${MAX_INDEX_DEPTH} indexes deep`);
  }

  private readConfig(reference: ImageReference, digest: string, credentials: readonly RegistryCredential[]): Promise<EntrypointAndCmd> {
    const key = `${reference.apiHost}/${reference.repository}@${digest}`;
    let config = this.configs.get(key);
    if (config === undefined) {
      config = (async () => {
        const what = `the image config ${digest} of ${formatImageReference(reference)}`;
        const fetched = await this.client.get(reference, `blobs/${digest}`, undefined, credentials, MAX_CONFIG_BYTES);
        verifyDigest(fetched.body, digest, what);
        return parseImageConfig(fetched.body, what);
      })();
      this.configs.set(key, config);
    }
    return config;
  }

  // Builds the miss reason: what failed, then what to do. The caller's message adds the annotation
  // as the fix that always works. Reasons avoid semicolons, because the caller joins them with one.
  private explain(error: RegistryError, reference: ImageReference, credentials: readonly RegistryCredential[], pod: PullingPod): string {
    const image = formatImageReference(reference);
    const registry = `registry ${reference.domain}`;
    switch (error.failure) {
      case 'unauthorized': {
        const missing = this.credentials.missingPullSecrets(pod);
        const missingHint = missing.length > 0 ? ` (the pod lists imagePullSecrets ${missing.join(', ')}, which no --registry-auth file contains)` : '';
        if (error.rejected.length > 0) {
          const users = error.rejected.map((credential) => `user ${credential.username} from ${credential.origin}`).join(', ');
          return (
            `${registry} rejected the credentials of ${users} for image ${image} (${error.message})${missingHint}, ` +
            'so check the user name and password of the pull secret, and that the repository exists, because some registries answer 401 for an unknown repository'
          );
        }
        if (credentials.length > 0) {
          return `${registry} refused image ${image} (${error.message})`;
        }
        return (
          `${registry} requires credentials to read image ${image} (${error.message}), and no --registry-auth file has credentials for it${missingHint}, ` +
          "so pass the pull secret with --registry-auth FILE (`kubectl get secret NAME -o yaml` prints one) and list it in the pod's imagePullSecrets"
        );
      }
      case 'denied':
        return `${registry} denied access to image ${image} (${error.message}), so pass credentials that may pull it with --registry-auth FILE`;
      case 'not found':
        return `${registry} has no image ${image} (${error.message}), so check the repository name and the tag`;
      case 'unreachable': {
        const certificateHint = /CERT|SELF_SIGNED|certificate/.test(error.message)
          ? ', or set NODE_EXTRA_CA_CERTS to the PEM file of the CA that signed the registry certificate'
          : '';
        return `${error.message} to read image ${image}, so check that the registry runs and that this machine reaches it${certificateHint}, or pass --no-registry`;
      }
      case 'timed out':
        return `${error.message} while reading image ${image}, so check that this machine reaches the registry, or raise --registry-timeout`;
      case 'insecure':
      case 'invalid response':
      case 'http error':
        return `${registry} failed for image ${image}: ${error.message}`;
    }
  }
}
