import { createHash } from 'node:crypto';
import { InjectError } from '../errors.js';
import { isRecord } from '../k8s.js';

export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const DOCKER_CONFIG = 'application/vnd.docker.container.image.v1+json';
const DOCKER_SCHEMA1_MANIFESTS = new Set(['application/vnd.docker.distribution.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v1+prettyjws']);

/** Accept header of a manifest request: both index types and both image manifest types. */
export const MANIFEST_ACCEPT = [OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST].join(', ');

/** OS, architecture and optional variant, as in an image index entry. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** A content descriptor: media type, digest and size of a manifest or blob. */
export interface Descriptor {
  mediaType: string | undefined;
  digest: string;
  size: number | undefined;
  platform?: Platform;
}

export type ParsedManifest = { kind: 'index'; manifests: Descriptor[] } | { kind: 'image'; config: Descriptor };

/** Error in a manifest or config that the registry returned; the resolver reports it as a miss. */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

// Normalizes OS, architecture and variant as containerd's normalizeArch (platforms/database.go)
// does: other tools' names map to the Go names, and the default variants are filled in. So
// `linux/aarch64` matches an entry `linux/arm64/v8`, and `linux/arm` one of variant v7.
function normalizePlatform(platform: Platform): Required<Platform> {
  let architecture = platform.architecture.toLowerCase();
  let variant = platform.variant?.toLowerCase() ?? '';
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
      architecture = 'amd64';
      variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '' || variant === '8') {
        variant = 'v8';
      }
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') {
        variant = 'v7';
      } else if (variant === '5' || variant === '6' || variant === '8') {
        variant = `v${variant}`;
      }
      break;
  }
  return { os: platform.os.toLowerCase(), architecture, variant };
}

/** Parses `os/architecture[/variant]`, such as `linux/amd64` or `linux/arm64/v8`. */
export function parsePlatform(text: string): Platform {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((part) => !/^[A-Za-z0-9_.-]+$/.test(part))) {
    throw new InjectError(`Invalid --platform ${JSON.stringify(text)}: expected os/architecture[/variant], such as linux/amd64 or linux/arm64/v8.`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter((part) => part !== undefined && part !== '').join('/');
}

/**
 * Returns the index entry for a platform, or undefined. OS and architecture must be equal after
 * normalization, and so must a requested variant. Without a requested variant, the entry of the
 * default variant (v8 for arm64, v7 for arm, none for others) comes first, else the first entry.
 */
export function selectPlatform(manifests: readonly Descriptor[], requested: Platform): Descriptor | undefined {
  const wanted = normalizePlatform(requested);
  const candidates = manifests.filter((entry) => {
    if (entry.platform === undefined) {
      return false;
    }
    const platform = normalizePlatform(entry.platform);
    return platform.os === wanted.os && platform.architecture === wanted.architecture && (requested.variant === undefined || platform.variant === wanted.variant);
  });
  return candidates.find((entry) => normalizePlatform(entry.platform!).variant === wanted.variant) ?? candidates[0];
}

/** Raises a ManifestError unless `body` has the digest `sha256:…` or `sha512:…`. */
export function verifyDigest(body: Buffer, digest: string, what: string): void {
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new ManifestError(`${what} has the digest ${digest}, whose algorithm tandem cannot verify (only sha256 and sha512)`);
  }
  const actual = `${algorithm}:${createHash(algorithm).update(body).digest('hex')}`;
  if (actual !== digest.toLowerCase()) {
    throw new ManifestError(`${what} does not match its digest: expected ${digest}, got ${actual}`);
  }
}

/** Returns the sha256 digest of a body, such as that of a manifest fetched by tag. */
export function sha256Digest(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function parseJson(body: Buffer, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ManifestError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
  if (!isRecord(value)) {
    throw new ManifestError(`${what} is not a JSON object`);
  }
  return value;
}

function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isRecord(value) || typeof value.digest !== 'string') {
    throw new ManifestError(`${what} has a descriptor without a digest`);
  }
  const descriptor: Descriptor = {
    mediaType: typeof value.mediaType === 'string' ? value.mediaType : undefined,
    digest: value.digest,
    size: typeof value.size === 'number' ? value.size : undefined,
  };
  const platform = value.platform;
  if (isRecord(platform) && typeof platform.os === 'string' && typeof platform.architecture === 'string') {
    descriptor.platform = { os: platform.os, architecture: platform.architecture };
    if (typeof platform.variant === 'string' && platform.variant !== '') {
      descriptor.platform.variant = platform.variant;
    }
  }
  return descriptor;
}

/**
 * Parses an image index (OCI index or Docker manifest list) or an image manifest (OCI or Docker
 * schema 2). The media type comes from Content-Type, else from the body's `mediaType`, else from
 * its fields, because the OCI spec makes `mediaType` optional.
 */
export function parseManifest(body: Buffer, contentType: string | undefined, what: string): ParsedManifest {
  const manifest = parseJson(body, what);
  const declared = typeof manifest.mediaType === 'string' ? manifest.mediaType : undefined;
  const known = (type: string | undefined): boolean => type === OCI_INDEX || type === OCI_MANIFEST || type === DOCKER_MANIFEST_LIST || type === DOCKER_MANIFEST;
  let mediaType = known(contentType) ? contentType : known(declared) ? declared : undefined;
  if (mediaType === undefined && (DOCKER_SCHEMA1_MANIFESTS.has(contentType ?? '') || manifest.schemaVersion === 1)) {
    throw new ManifestError(`${what} is a Docker schema 1 manifest, which current container runtimes no longer pull; push the image again with a current build tool`);
  }
  if (mediaType === undefined) {
    mediaType = Array.isArray(manifest.manifests) ? OCI_INDEX : isRecord(manifest.config) ? OCI_MANIFEST : undefined;
  }
  if (mediaType === undefined) {
    throw new ManifestError(`${what} has the media type ${contentType ?? declared ?? 'none'}, which is neither an image index nor an image manifest`);
  }

  if (mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST) {
    if (!Array.isArray(manifest.manifests)) {
      throw new ManifestError(`${what} is an image index without a "manifests" list`);
    }
    return { kind: 'index', manifests: manifest.manifests.map((entry) => parseDescriptor(entry, what)) };
  }
  if (!isRecord(manifest.config)) {
    throw new ManifestError(`${what} is an image manifest without a "config" descriptor`);
  }
  return { kind: 'image', config: parseDescriptor(manifest.config, what) };
}

/** ENTRYPOINT and CMD of an image config; null or missing values are empty lists, as Docker treats them. */
export interface EntrypointAndCmd {
  entrypoint: string[];
  cmd: string[];
}

function stringList(value: unknown, field: string, what: string): string[] {
  if (value === undefined || value === null) {
    return [];
  }
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new ManifestError(`${what} has a config.${field} that is not a list of strings`);
  }
  return value;
}

/** Reads `config.Entrypoint` and `config.Cmd` from an OCI or Docker image config blob. */
export function parseImageConfig(body: Buffer, what: string): EntrypointAndCmd {
  const document = parseJson(body, what);
  const config = document.config;
  if (config !== undefined && config !== null && !isRecord(config)) {
    throw new ManifestError(`${what} has a "config" that is not an object`);
  }
  return { entrypoint: stringList(config?.Entrypoint, 'Entrypoint', what), cmd: stringList(config?.Cmd, 'Cmd', what) };
}
