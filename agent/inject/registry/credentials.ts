import { readFile } from 'node:fs/promises';
import { InjectError } from '../errors.js';
import { parseManifests } from '../io.js';
import { isRecord } from '../k8s.js';
import { DOCKER_HUB_DOMAIN, type ImageReference } from './reference.js';

/** A user name and password for one registry, from a docker config or a pull secret. */
export interface RegistryCredential {
  /** Registry key as written in the file, such as `https://index.docker.io/v1/` or `registry.example:5000`. */
  registryKey: string;
  username: string;
  password: string;
  /** Source of the credential for messages, such as `Secret prod/regcred in pull-secret.yaml`. */
  origin: string;
}

/** One `--registry-auth` input: a docker config file, or one pull Secret of a manifest file. */
interface CredentialSource {
  origin: string;
  /** Name and namespace of a pull Secret; undefined for a docker config file. */
  secret?: { name: string; namespace: string | undefined };
  entries: KeyedCredential[];
}

interface KeyedCredential {
  credential: RegistryCredential;
  /** Host and path that an image name must match, the form the kubelet derives from the key. */
  matchKey: string;
}

/** The pod that pulls an image, to put the credentials of its own pull secrets first. */
export interface PullingPod {
  namespace?: string;
  imagePullSecrets?: readonly string[];
}

export const DOCKER_CONFIG_JSON_TYPE = 'kubernetes.io/dockerconfigjson';
export const DOCKER_CFG_TYPE = 'kubernetes.io/dockercfg';
/** Key under which the kubelet files Docker Hub credentials (`https://index.docker.io/v1/`). */
const DOCKER_HUB_KEY = 'index.docker.io';

function decodeBase64(text: string, what: string): string {
  if (!/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(text)) {
    throw new InjectError(`${what} is not valid base64.`);
  }
  return Buffer.from(text, 'base64').toString('utf8');
}

/**
 * Reduces a registry key to the host-and-path form that the kubelet matches images against
 * (Kubernetes pkg/credentialprovider/keyring.go): the scheme is dropped, and a path that starts
 * with /v1/ or /v2/ is reduced to the rest, so `https://index.docker.io/v1/` becomes `index.docker.io`.
 */
export function credentialMatchKey(registryKey: string): string | undefined {
  const withScheme = /^https?:\/\//.test(registryKey) ? registryKey : `https://${registryKey}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  let path = url.pathname;
  if (path.startsWith('/v1/') || path.startsWith('/v2/')) {
    path = path.slice(3);
  }
  return path === '' || path === '/' ? url.host : `${url.host}${path}`;
}

// Orders strings by UTF-16 code units, as Go's sort.Strings orders ASCII keys.
function compareCodeUnits(left: string, right: string): number {
  if (left < right) {
    return -1;
  }
  return left > right ? 1 : 0;
}

function globToRegExp(pattern: string): RegExp {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^.]*').replace(/\?/g, '[^.]');
  return new RegExp(`^${source}$`);
}

/**
 * Tells whether an image name such as `registry.example:5000/team/app` matches a credential key as
 * the kubelet does. The hosts match part by part between dots, with `*` and `?` as wildcards inside
 * a part. The ports must be equal, and the key's path must be a prefix of the image's path.
 */
export function credentialKeyMatches(matchKey: string, imageName: string): boolean {
  const split = (text: string): { host: string; port: string; path: string } => {
    const slash = text.indexOf('/');
    const hostPort = slash < 0 ? text : text.slice(0, slash);
    const path = slash < 0 ? '' : text.slice(slash);
    const colon = hostPort.lastIndexOf(':');
    const bracket = hostPort.lastIndexOf(']');
    if (colon > bracket) {
      return { host: hostPort.slice(0, colon).toLowerCase(), port: hostPort.slice(colon + 1), path };
    }
    return { host: hostPort.toLowerCase(), port: '', path };
  };
  const key = split(matchKey);
  const image = split(imageName);
  const keyParts = key.host.split('.');
  const imageParts = image.host.split('.');
  if (keyParts.length !== imageParts.length) {
    return false;
  }
  if (!keyParts.every((part, index) => globToRegExp(part).test(imageParts[index]!))) {
    return false;
  }
  return key.port === image.port && image.path.startsWith(key.path);
}

// Reads one entry of `auths` (or of a legacy .dockercfg): `auth` is base64 of `user:password`, and
// `username` and `password` may stand in for it, as in the kubelet's DockerConfigEntry. An entry
// with neither, as docker writes when a credential helper stores the secret, yields nothing.
function parseEntry(registryKey: string, value: unknown, origin: string): RegistryCredential | undefined {
  if (!isRecord(value)) {
    throw new InjectError(`Invalid registry entry ${JSON.stringify(registryKey)} in ${origin}: expected an object with auth, or username and password.`);
  }
  if (typeof value.auth === 'string' && value.auth !== '') {
    const decoded = decodeBase64(value.auth, `The auth of registry ${JSON.stringify(registryKey)} in ${origin}`);
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new InjectError(
        `Invalid auth of registry ${JSON.stringify(registryKey)} in ${origin}: the base64 text must decode to user:password, and it contains no colon.`,
      );
    }
    return { registryKey, username: decoded.slice(0, colon), password: decoded.slice(colon + 1), origin };
  }
  if (typeof value.username === 'string' && typeof value.password === 'string' && value.username !== '') {
    return { registryKey, username: value.username, password: value.password, origin };
  }
  return undefined;
}

function parseAuths(auths: unknown, origin: string): KeyedCredential[] {
  if (!isRecord(auths)) {
    throw new InjectError(`Invalid docker config in ${origin}: "auths" must be an object that maps registries to credentials.`);
  }
  const entries: KeyedCredential[] = [];
  for (const [registryKey, value] of Object.entries(auths)) {
    const credential = parseEntry(registryKey, value, origin);
    const matchKey = credentialMatchKey(registryKey);
    if (matchKey === undefined) {
      throw new InjectError(`Invalid registry ${JSON.stringify(registryKey)} in ${origin}: expected a host[:port][/path] or a URL.`);
    }
    if (credential !== undefined) {
      entries.push({ credential, matchKey });
    }
  }
  return entries;
}

// A legacy .dockercfg maps registries to entries directly, so every value must look like an entry.
function isLegacyDockerCfg(value: Record<string, unknown>): boolean {
  const entries = Object.values(value);
  return entries.length > 0 && entries.every((entry) => isRecord(entry) && ('auth' in entry || 'username' in entry));
}

function parseDockerConfigText(text: string, format: 'config.json' | 'dockercfg', origin: string): KeyedCredential[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new InjectError(`Invalid JSON in ${origin}: ${(error as Error).message}.`);
  }
  if (!isRecord(value)) {
    throw new InjectError(`Invalid docker config in ${origin}: expected a JSON object.`);
  }
  return format === 'config.json' ? parseAuths(value.auths ?? {}, origin) : parseAuths(value, origin);
}

function secretSource(secret: Record<string, unknown>, file: string): CredentialSource {
  const metadata = isRecord(secret.metadata) ? secret.metadata : {};
  const name = typeof metadata.name === 'string' ? metadata.name : undefined;
  const namespace = typeof metadata.namespace === 'string' ? metadata.namespace : undefined;
  if (name === undefined) {
    throw new InjectError(`The Secret in ${file} has no metadata.name. Give it the name that the pods list in imagePullSecrets.`);
  }
  const label = `Secret ${namespace === undefined ? '' : `${namespace}/`}${name} in ${file}`;

  const type = secret.type;
  let key: '.dockerconfigjson' | '.dockercfg';
  if (type === DOCKER_CONFIG_JSON_TYPE) {
    key = '.dockerconfigjson';
  } else if (type === DOCKER_CFG_TYPE) {
    key = '.dockercfg';
  } else {
    throw new InjectError(
      `${label} has type ${JSON.stringify(type ?? null)}, which contains no registry credentials. ` +
        `Pass a pull secret of type ${DOCKER_CONFIG_JSON_TYPE}, such as one from \`kubectl create secret docker-registry\`.`,
    );
  }
  const data = isRecord(secret.data) ? secret.data : {};
  const stringData = isRecord(secret.stringData) ? secret.stringData : {};
  const plain = stringData[key];
  const encoded = data[key];
  let text: string;
  if (typeof plain === 'string') {
    text = plain;
  } else if (typeof encoded === 'string') {
    text = decodeBase64(encoded, `data.${key} of ${label}`);
  } else {
    throw new InjectError(`${label} has no ${key} in data or stringData. A Secret of type ${String(type)} stores its docker config under that key.`);
  }
  return { origin: label, secret: { name, namespace }, entries: parseDockerConfigText(text, key === '.dockerconfigjson' ? 'config.json' : 'dockercfg', label) };
}

function sourcesOfDocument(document: unknown, file: string): CredentialSource[] {
  if (!isRecord(document)) {
    throw new InjectError(`${file} is neither a docker config.json nor a Secret manifest: a document is not an object.`);
  }
  if (document.kind === 'List' && Array.isArray(document.items)) {
    return document.items.flatMap((item) => sourcesOfDocument(item, file));
  }
  if (document.kind === 'Secret') {
    return [secretSource(document, file)];
  }
  if ('auths' in document) {
    return [{ origin: file, entries: parseAuths(document.auths, file) }];
  }
  if (isLegacyDockerCfg(document)) {
    return [{ origin: file, entries: parseAuths(document, file) }];
  }
  throw new InjectError(
    `${file} is neither a docker config.json (an object with "auths") nor a Secret manifest of type ${DOCKER_CONFIG_JSON_TYPE}. ` +
      'Pass ~/.docker/config.json, or the output of `kubectl get secret NAME -o yaml`.',
  );
}

/**
 * Registry credentials from `--registry-auth` files, looked up for an image as the kubelet does.
 * Docker config files act like the node's own credentials, which the kubelet uses for every pod.
 */
export class RegistryCredentials {
  constructor(private readonly sources: readonly CredentialSource[] = []) {}

  /** Number of credentials loaded, over every file. */
  get size(): number {
    return this.sources.reduce((count, source) => count + source.entries.length, 0);
  }

  /**
   * Returns the credentials that match an image, in the order to try them. The kubelet tries the
   * pod's pull secrets before the node's credentials and, within one source, longer keys first.
   * Pull Secrets that the pod does not list come after its own, because the pod's ServiceAccount
   * may add them, and docker config files come last. Docker Hub images fall back to the
   * `index.docker.io` key when no key matches.
   */
  lookup(reference: ImageReference, pod: PullingPod = {}): RegistryCredential[] {
    const listed = pod.imagePullSecrets ?? [];
    const isPodSecret = (source: CredentialSource): boolean =>
      source.secret !== undefined &&
      listed.includes(source.secret.name) &&
      (source.secret.namespace === undefined || pod.namespace === undefined || source.secret.namespace === pod.namespace);
    const rank = (source: CredentialSource): number => {
      if (isPodSecret(source)) {
        return listed.indexOf(source.secret!.name);
      }
      return source.secret !== undefined ? listed.length : listed.length + 1;
    };
    const ordered = [...this.sources].sort((a, b) => rank(a) - rank(b));

    const found: RegistryCredential[] = [];
    for (const source of ordered) {
      const keys = [...source.entries].sort((a, b) => compareCodeUnits(b.matchKey, a.matchKey));
      let matches = keys.filter((entry) => credentialKeyMatches(entry.matchKey, reference.name));
      if (matches.length === 0 && reference.domain === DOCKER_HUB_DOMAIN) {
        matches = keys.filter((entry) => entry.matchKey === DOCKER_HUB_KEY);
      }
      for (const { credential } of matches) {
        if (!found.some((other) => other.username === credential.username && other.password === credential.password)) {
          found.push(credential);
        }
      }
    }
    return found;
  }

  /** Returns the names in the pod's imagePullSecrets that no `--registry-auth` file contains. */
  missingPullSecrets(pod: PullingPod): string[] {
    const given = new Set(this.sources.flatMap((source) => (source.secret === undefined ? [] : [source.secret.name])));
    return (pod.imagePullSecrets ?? []).filter((name) => !given.has(name));
  }
}

/**
 * Loads `--registry-auth` files. Each is a docker config.json (`auths` with `auth`, or `username`
 * and `password`), a legacy .dockercfg, or a YAML or JSON manifest of one or more Secrets of type
 * kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg, as `kubectl get secret -o yaml` prints.
 */
export async function loadRegistryCredentials(files: readonly string[]): Promise<RegistryCredentials> {
  const sources: CredentialSource[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      throw new InjectError(`Cannot read the --registry-auth file ${file}: ${(error as Error).message}.`);
    }
    const documents = parseManifests(text, file);
    if (documents.length === 0) {
      throw new InjectError(`The --registry-auth file ${file} is empty. Pass a docker config.json or a pull Secret manifest.`);
    }
    sources.push(...documents.flatMap((document) => sourcesOfDocument(document, file)));
  }
  return new RegistryCredentials(sources);
}
