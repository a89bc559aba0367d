import { InjectError } from '../errors.js';

/** Registry that Docker and containerd use for names without a domain, such as `busybox`. */
export const DOCKER_HUB_DOMAIN = 'docker.io';
/** Host that serves the Docker Hub registry API; `docker.io` itself does not. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

/** An image reference split as Docker's `ParseNormalizedNamed` splits it. */
export interface ImageReference {
  /** Registry as written in normalized names, such as `docker.io` or `localhost:5000`. */
  domain: string;
  /** Host and optional port of the registry API, such as `registry-1.docker.io` or `localhost:5000`. */
  apiHost: string;
  /** Repository path inside the registry, such as `library/busybox`. */
  repository: string;
  tag?: string;
  /** Content digest, such as `sha256:…`. When a reference has both, the runtime pulls the digest. */
  digest?: string;
  /** Fully qualified name without tag or digest, such as `docker.io/library/busybox`. */
  name: string;
}

// The grammar of github.com/distribution/reference (regexp.go). Path components are lowercase
// letters and digits joined by `.`, `_`, `__` or dashes. A domain is dot-separated components of
// letters, digits and dashes, or an IPv6 address in brackets, with an optional port.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_NAME = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*$/;
const IPV6_HOST = /^\[[a-fA-F0-9:]+\]$/;
const PORT = /^[0-9]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
/** Maximum length of a name, domain included, that the reference library accepts. */
const MAX_NAME_LENGTH = 255;

function invalid(image: string, problem: string): InjectError {
  return new InjectError(`Invalid image reference ${JSON.stringify(image)}: ${problem}. Write it as [registry[:port]/]repository[:tag][@digest], such as docker.io/library/busybox:1.36.`);
}

function isValidDomain(domain: string): boolean {
  const portSeparator = domain.startsWith('[') ? domain.indexOf(']:') + 1 : domain.lastIndexOf(':');
  const host = portSeparator > 0 ? domain.slice(0, portSeparator) : domain;
  const port = portSeparator > 0 ? domain.slice(portSeparator + 1) : undefined;
  if (port !== undefined && !PORT.test(port)) {
    return false;
  }
  return DOMAIN_NAME.test(host) || IPV6_HOST.test(host);
}

/**
 * Parses an image reference like Docker and containerd. A first component that contains no `.` or
 * `:`, is not `localhost` and has no uppercase letter is part of the repository on Docker Hub, and a
 * single-component Docker Hub name gets the `library/` prefix. Without tag or digest the tag is
 * `latest`. Raises an InjectError for a reference that the container runtime would also reject.
 */
export function parseImageReference(image: string): ImageReference {
  let rest = image;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      throw invalid(image, `the digest ${JSON.stringify(digest)} is not of the form algorithm:hex`);
    }
  }

  // A tag follows the last colon that comes after the last slash, so the port of `localhost:5000/x` is no tag.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(image, `the tag ${JSON.stringify(tag)} is invalid`);
    }
  }
  if (rest === '') {
    throw invalid(image, 'the repository name is missing');
  }

  let domain = DOCKER_HUB_DOMAIN;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first) {
      domain = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (domain === 'index.docker.io') {
    domain = DOCKER_HUB_DOMAIN;
  }
  if (!isValidDomain(domain)) {
    throw invalid(image, `the registry ${JSON.stringify(domain)} is not a valid host[:port]`);
  }
  if (domain === DOCKER_HUB_DOMAIN && !repository.includes('/')) {
    repository = `library/${repository}`;
  }
  if (repository.toLowerCase() !== repository) {
    throw invalid(image, `the repository ${JSON.stringify(repository)} must be lowercase`);
  }
  const badComponent = repository.split('/').find((component) => !PATH_COMPONENT.test(component));
  if (badComponent !== undefined) {
    throw invalid(image, `the path component ${JSON.stringify(badComponent)} may contain only lowercase letters, digits and single separators (. _ __ -)`);
  }

  const name = `${domain}/${repository}`;
  if (name.length > MAX_NAME_LENGTH) {
    throw invalid(image, `the name is ${name.length} characters long, more than the maximum of ${MAX_NAME_LENGTH}`);
  }
  return {
    domain,
    apiHost: domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_API_HOST : domain,
    repository,
    tag: tag ?? (digest === undefined ? 'latest' : undefined),
    digest,
    name,
  };
}

/** Formats a reference in its fully qualified form, such as `docker.io/library/busybox:latest`. */
export function formatImageReference(reference: ImageReference): string {
  return `${reference.name}${reference.tag === undefined ? '' : `:${reference.tag}`}${reference.digest === undefined ? '' : `@${reference.digest}`}`;
}

/** Splits `host:port` or `[v6]:port` into the host without brackets and the port, if any. */
export function splitHostPort(hostPort: string): { host: string; port: string | undefined } {
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    const port = hostPort.slice(end + 1);
    return { host: hostPort.slice(1, end), port: port.startsWith(':') ? port.slice(1) : undefined };
  }
  const colon = hostPort.lastIndexOf(':');
  return colon < 0 ? { host: hostPort, port: undefined } : { host: hostPort.slice(0, colon), port: hostPort.slice(colon + 1) };
}

/** Tells whether a host name or address is on this machine: `localhost`, `*.localhost`, 127.0.0.0/8 or ::1. */
export function isLoopbackHost(host: string): boolean {
  const lower = host.toLowerCase();
  return lower === 'localhost' || lower.endsWith('.localhost') || /^127(?:\.\d{1,3}){3}$/.test(lower) || lower === '::1' || lower === '0:0:0:0:0:0:0:1';
}
