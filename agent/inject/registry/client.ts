import { VERSION } from '../../version.js';
import type { RegistryCredential } from './credentials.js';
import { isLoopbackHost, splitHostPort, type ImageReference } from './reference.js';

/** Kind of failure of a registry request, which the resolver turns into a message with its fix. */
export type RegistryFailure = 'unauthorized' | 'denied' | 'not found' | 'unreachable' | 'timed out' | 'insecure' | 'invalid response' | 'http error';

/** A failed registry request. The message describes the failure, without the fix. */
export class RegistryError extends Error {
  override name = 'RegistryError';

  constructor(
    readonly failure: RegistryFailure,
    message: string,
    /** Credentials that the registry or its token server rejected, for an `unauthorized` failure. */
    readonly rejected: readonly RegistryCredential[] = [],
  ) {
    super(message);
  }
}

export interface RegistryClientOptions {
  /** Time limit of one HTTP request, body included, in milliseconds. */
  timeoutMs: number;
  /** Registries (`host` or `host:port`) that may be reached over plain HTTP, besides loopback hosts. */
  insecureRegistries: readonly string[];
}

/** A response body read in full, with the headers that the manifest code needs. */
export interface FetchedBody {
  body: Buffer;
  /** Media type from Content-Type, without parameters. */
  contentType: string | undefined;
  url: string;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const MAX_REDIRECTS = 5;
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Parses a WWW-Authenticate header (RFC 7235) into challenges, such as
 * `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:app:pull"`.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const challenges: Challenge[] = [];
  const parameter = /^([\w!#$%&'*+.^`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?\s*/;
  const scheme = /^([\w!#$%&'*+.^`|~-]+)\s*,?\s*/;
  let rest = header.trim();
  while (rest !== '') {
    const current = challenges.at(-1);
    const parameterMatch = current === undefined ? null : parameter.exec(rest);
    if (current !== undefined && parameterMatch !== null) {
      const [text, name, quoted, token] = parameterMatch;
      current.params[name!.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : (token ?? '');
      rest = rest.slice(text.length);
      continue;
    }
    const schemeMatch = scheme.exec(rest);
    if (schemeMatch === null) {
      break;
    }
    challenges.push({ scheme: schemeMatch[1]!.toLowerCase(), params: {} });
    rest = rest.slice(schemeMatch[0].length);
  }
  return challenges;
}

function basicAuthorization(credential: RegistryCredential): string {
  return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
}

// Returns the error code and message of a failed fetch. Node's fetch raises a TypeError whose cause
// is the system or TLS error, or an AggregateError when every address of a host failed.
function fetchFailureDetail(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  const first = cause instanceof AggregateError ? (cause.errors[0] as unknown) : cause;
  if (first instanceof Error && first.message === 'bad port') {
    return 'fetch blocks this port, as the Fetch standard lists it among the bad ports, so the registry must listen on another port';
  }
  if (first instanceof Error) {
    const code = (first as NodeJS.ErrnoException).code;
    return code !== undefined && !first.message.includes(code) ? `${code}: ${first.message}` : first.message;
  }
  return error instanceof Error ? error.message : String(error);
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
}

function registryErrorText(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: unknown; message?: unknown }[] };
    const texts = (parsed.errors ?? []).map((entry) => [entry.code, entry.message].filter((part) => typeof part === 'string').join(': ')).filter((text) => text !== '');
    if (texts.length > 0) {
      return texts.join(', ');
    }
  } catch {
    // Not the registry's JSON error format; the status line alone describes the failure.
  }
  return '';
}

/**
 * A client of the OCI distribution API (the Docker Registry HTTP API V2) that reads manifests and
 * blobs. It sends a request without credentials first and meets a 401 challenge with the Bearer
 * token flow or Basic auth, trying each matching credential in turn. It speaks HTTPS, and
 * plain HTTP only to loopback hosts and `insecureRegistries`, after HTTPS failed to connect, as
 * Docker does for insecure registries. Tokens and unreachable hosts are cached for the process.
 */
export class RegistryClient {
  private readonly insecure: ReadonlySet<string>;
  /** Scheme (HTTPS or plain HTTP) that connected, per registry host. */
  private readonly schemes = new Map<string, 'https' | 'http'>();
  /** Connection failure per registry host, so later images fail at once instead of waiting again. */
  private readonly unreachable = new Map<string, RegistryError>();
  /** Authorization header that worked, per registry host and repository. */
  private readonly authorizations = new Map<string, string>();

  constructor(private readonly options: RegistryClientOptions) {
    this.insecure = new Set(options.insecureRegistries.map((host) => host.toLowerCase()));
  }

  /** Tells whether plain HTTP is allowed to a `host[:port]`. */
  allowsPlainHttp(hostPort: string): boolean {
    const lower = hostPort.toLowerCase();
    return isLoopbackHost(splitHostPort(lower).host) || this.insecure.has(lower) || this.insecure.has(splitHostPort(lower).host);
  }

  /**
   * GETs `/v2/<repository>/<path>` from the image's registry and returns the body, at most
   * `maxBytes` long. Raises a RegistryError for every failure.
   */
  async get(reference: ImageReference, path: string, accept: string | undefined, credentials: readonly RegistryCredential[], maxBytes: number): Promise<FetchedBody> {
    const host = reference.apiHost;
    const known = this.unreachable.get(host);
    if (known !== undefined) {
      throw known;
    }

    const remembered = this.schemes.get(host);
    const schemes: ('https' | 'http')[] = remembered !== undefined ? [remembered] : this.allowsPlainHttp(host) ? ['https', 'http'] : ['https'];
    const failures: string[] = [];
    for (const scheme of schemes) {
      const url = `${scheme}://${host}/v2/${reference.repository}/${path}`;
      let response: Response;
      try {
        response = await this.getAuthorized(url, reference, accept, credentials);
      } catch (error) {
        if (error instanceof RegistryError) {
          throw error;
        }
        if (isTimeout(error)) {
          throw this.timedOut(reference, url);
        }
        failures.push(`${scheme === 'https' ? 'HTTPS' : 'plain HTTP'} (${fetchFailureDetail(error)})`);
        continue;
      }

      this.schemes.set(host, scheme);
      try {
        return await this.readBody(response, url, reference, maxBytes);
      } catch (error) {
        // A registry that serves HTTPS with an untrusted certificate may respond to plain HTTP with 400, so
        // the HTTPS failure is the useful part of the message.
        if (error instanceof RegistryError && error.failure === 'http error' && failures.length > 0) {
          throw new RegistryError('http error', `${error.message}, after HTTPS failed (${failures.join(', ')})`);
        }
        if (error instanceof RegistryError) {
          throw error;
        }
        if (isTimeout(error)) {
          throw this.timedOut(reference, url);
        }
        throw new RegistryError('unreachable', `the connection to registry ${reference.domain} failed during GET ${url} (${fetchFailureDetail(error)})`);
      }
    }

    const unreachable = new RegistryError('unreachable', `cannot connect to registry ${reference.domain} over ${failures.join(' or ')}`);
    this.unreachable.set(host, unreachable);
    throw unreachable;
  }

  private timedOut(reference: ImageReference, url: string): RegistryError {
    const error = new RegistryError('timed out', `registry ${reference.domain} sent no complete response within ${this.options.timeoutMs / 1000} s to GET ${url}`);
    this.unreachable.set(reference.apiHost, error);
    return error;
  }

  private async readBody(response: Response, url: string, reference: ImageReference, maxBytes: number): Promise<FetchedBody> {
    const body = await this.readLimited(response, url, maxBytes);
    if (response.ok) {
      const contentType = response.headers.get('content-type')?.split(';')[0]?.trim() || undefined;
      return { body, contentType, url };
    }

    const detail = registryErrorText(body);
    const status = `${response.status} ${response.statusText}`.trim();
    const what = `GET ${url} returned ${status}${detail === '' ? '' : `, ${detail}`}`;
    switch (response.status) {
      case 401:
        throw new RegistryError('unauthorized', what);
      case 403:
        throw new RegistryError('denied', what);
      case 404:
        throw new RegistryError('not found', what);
      default:
        throw new RegistryError('http error', `registry ${reference.domain}: ${what}`);
    }
  }

  private async readLimited(response: Response, url: string, maxBytes: number): Promise<Buffer> {
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > maxBytes) {
      await response.body?.cancel();
      throw new RegistryError('invalid response', `GET ${url} returned ${declared} bytes, more than the maximum of ${maxBytes}`);
    }
    const chunks: Buffer[] = [];
    let length = 0;
    if (response.body !== null) {
      for await (const chunk of response.body) {
        length += chunk.length;
        if (length > maxBytes) {
          throw new RegistryError('invalid response', `GET ${url} returned more than the maximum of ${maxBytes} bytes`);
        }
        chunks.push(Buffer.from(chunk));
      }
    }
    return Buffer.concat(chunks);
  }

  // Sends the request with the authorization that worked before for this repository. After a 401
  // challenge it retries once with each candidate credential.
  private async getAuthorized(url: string, reference: ImageReference, accept: string | undefined, credentials: readonly RegistryCredential[]): Promise<Response> {
    const key = `${reference.apiHost}/${reference.repository}`;
    const cached = this.authorizations.get(key);
    const first = await this.send(url, accept, cached);
    if (first.status !== 401) {
      return first;
    }

    const header = first.headers.get('www-authenticate') ?? '';
    await first.body?.cancel();
    const challenges = parseWwwAuthenticate(header);
    const bearer = challenges.find((challenge) => challenge.scheme === 'bearer');
    const basic = challenges.find((challenge) => challenge.scheme === 'basic');
    if (bearer === undefined && basic === undefined) {
      throw new RegistryError('unauthorized', `GET ${url} returned 401 Unauthorized with an authentication challenge that tandem does not support: ${JSON.stringify(header)}`);
    }
    if (bearer === undefined && credentials.length === 0) {
      throw new RegistryError('unauthorized', `GET ${url} returned 401 Unauthorized with a Basic auth challenge`);
    }

    // With Bearer, a registry without credentials may still hand out an anonymous token.
    const candidates: (RegistryCredential | undefined)[] = credentials.length > 0 ? [...credentials] : [undefined];
    const rejected: RegistryCredential[] = [];
    let last: Response | undefined;
    for (const credential of candidates) {
      let authorization: string | undefined;
      if (bearer !== undefined) {
        authorization = await this.fetchToken(bearer, reference, credential, rejected);
        if (authorization === undefined) {
          continue;
        }
      } else {
        authorization = basicAuthorization(credential!);
      }

      await last?.body?.cancel();
      last = await this.send(url, accept, authorization);
      if (last.status !== 401 && last.status !== 403) {
        this.authorizations.set(key, authorization);
        return last;
      }
      if (credential !== undefined) {
        rejected.push(credential);
      }
    }

    if (last !== undefined && last.status === 403) {
      return last;
    }
    await last?.body?.cancel();
    throw new RegistryError('unauthorized', `GET ${url} returned 401 Unauthorized`, rejected);
  }

  // Runs the token flow of the Docker Registry token specification: GET the realm with service and
  // scope, Basic-authenticated when a credential is given, and read `token` or `access_token`.
  // Returns undefined when the token server rejects the credential.
  private async fetchToken(challenge: Challenge, reference: ImageReference, credential: RegistryCredential | undefined, rejected: RegistryCredential[]): Promise<string | undefined> {
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch {
      throw new RegistryError('invalid response', `registry ${reference.domain} sent a Bearer challenge with the invalid realm ${JSON.stringify(realm ?? null)}`);
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.allowsPlainHttp(url.host))) {
      throw new RegistryError(
        'insecure',
        `registry ${reference.domain} sends clients to the token server ${url.href}, which is not HTTPS, so pass --insecure-registry ${url.host} to allow plain HTTP to it`,
      );
    }
    if (challenge.params.service !== undefined) {
      url.searchParams.set('service', challenge.params.service);
    }
    url.searchParams.set('scope', challenge.params.scope ?? `repository:${reference.repository}:pull`);

    const server = `the token server ${url.origin}${url.pathname} of registry ${reference.domain}`;
    let response: Response;
    let body: Buffer;
    try {
      response = await this.send(url.href, 'application/json', credential === undefined ? undefined : basicAuthorization(credential));
      body = await this.readLimited(response, url.href, MAX_TOKEN_RESPONSE_BYTES);
    } catch (error) {
      if (error instanceof RegistryError) {
        throw error;
      }
      if (isTimeout(error)) {
        throw new RegistryError('timed out', `${server} sent no complete response within ${this.options.timeoutMs / 1000} s`);
      }
      throw new RegistryError('unreachable', `cannot connect to ${server} (${fetchFailureDetail(error)})`);
    }
    if (response.status === 401 || response.status === 403) {
      if (credential === undefined) {
        throw new RegistryError('unauthorized', `${server} rejected the request for an anonymous token with ${response.status}`);
      }
      rejected.push(credential);
      return undefined;
    }
    if (!response.ok) {
      throw new RegistryError('http error', `${server} returned ${response.status} ${response.statusText}`);
    }
    let token: unknown;
    try {
      const parsed = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = parsed.token ?? parsed.access_token;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '') {
      throw new RegistryError('invalid response', `${server} returned no token in its JSON response`);
    }
    return `Bearer ${token}`;
  }

  // Sends one GET and follows redirects itself, so that the Authorization header never reaches
  // another origin (blob downloads often redirect to a storage service) and plain HTTP is refused
  // on the way too.
  private async send(url: string, accept: string | undefined, authorization: string | undefined): Promise<Response> {
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    let current = new URL(url);
    const origin = current.origin;
    for (let redirects = 0; ; redirects += 1) {
      const headers: Record<string, string> = { 'user-agent': `tandem/${VERSION}` };
      if (accept !== undefined) {
        headers.accept = accept;
      }
      if (authorization !== undefined && current.origin === origin) {
        headers.authorization = authorization;
      }
      const response = await fetch(current, { headers, redirect: 'manual', signal });
      const location = response.headers.get('location');
      if (!REDIRECT_STATUSES.has(response.status) || location === null) {
        return response;
      }
      await response.body?.cancel();
      if (redirects >= MAX_REDIRECTS) {
        throw new RegistryError('invalid response', `GET ${url} redirected more than ${MAX_REDIRECTS} times`);
      }
      const next = new URL(location, current);
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && this.allowsPlainHttp(next.host))) {
        throw new RegistryError('insecure', `GET ${url} redirected to ${next.origin}, which is not HTTPS, so pass --insecure-registry ${next.host} to allow plain HTTP to it`);
      }
      current = next;
    }
  }
}
