import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '../../agent/inject/argv.js';
import type { ImageConfigRequest, ImageConfigResolver, ImageConfigResult } from '../../agent/inject/image-config.js';
import { RegistryClient, parseWwwAuthenticate } from '../../agent/inject/registry/client.js';
import { credentialKeyMatches, credentialMatchKey, loadRegistryCredentials } from '../../agent/inject/registry/credentials.js';
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, parsePlatform, selectPlatform, type Descriptor } from '../../agent/inject/registry/manifest.js';
import { effectivePullPolicy, PullPolicyResolver } from '../../agent/inject/registry/pull-policy.js';
import { parseImageReference } from '../../agent/inject/registry/reference.js';
import { RegistryResolver } from '../../agent/inject/registry/resolver.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const CLI = path.resolve('dist/agent/cli.js');

// A self-signed certificate for IP 127.0.0.1, valid until 2126, made with
// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
// -subj "/CN=tandem test registry" -addext "subjectAltName=IP:127.0.0.1"`.
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgd74zEUSF2BEF10Ov
uD/Fno5Ku00BREZtUwQb5SmLiyahRANCAASgubB0qx9V+qNGg4n7vwxsNhk7BPg4
/TDEnAx1YMc+x8C76pJHcU8GtHxfUW2LKAl+XtGPH/RkgIh1uRgDSHll
-----END PRIVATE KEY-----
`;
const TEST_CERTIFICATE = `-----BEGIN CERTIFICATE-----
MIIBpjCCAUygAwIBAgIUesCyPFSNMRIJgSzMbkvT3d91S4YwCgYIKoZIzj0EAwIw
HzEdMBsGA1UEAwwUdGFuZGVtIHRlc3QgcmVnaXN0cnkwIBcNMjYxMjA0MjEyOTA1
WhgPMjEyNjExMTAyMTI5MDVaMB8xHTAbBgNVBAMMFHRhbmRlbSB0ZXN0IHJlZ2lz
dHJ5MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoLmwdKsfVfqjRoOJ+78MbDYZ
OwT4OP0wxJwMdWDHPsfAu+qSR3FPBrR8X1FtiygJfl7Rjx/0ZICIdbkYA0h5ZaNk
MGIwHQYDVR0OBBYEFMYsC0e5kDgvG3TH2uJniVVOuAOdMB8GA1UdIwQYMBaAFMYs
C0e5kDgvG3TH2uJniVVOuAOdMA8GA1UdEwEB/wQFMAMBAf8wDwYDVR0RBAgwBocE
fwAAATAKBggqhkjOPQQDAgNIADBFAiEAjpzY9LAQX3sv69k9XlVzNYlJ9RdbwUVy
A++zfNpXlvwCIBMCl+gu/pDGsedyqzTUE4M/r/AJcq0btHX6HP2Yf1Lr
-----END CERTIFICATE-----
`;

function request(image: string, overrides: Partial<ImageConfigRequest> = {}): ImageConfigRequest {
  return { containerName: 'app', image, need: 'entrypoint and cmd', annotations: {}, owner: 'Pod/p', ...overrides };
}

function configOf(result: ImageConfigResult): ImageConfig {
  if (!result.found) {
    throw new Error(`expected an image config, got a miss: ${result.reason}`);
  }
  return result.config;
}

function reasonOf(result: ImageConfigResult): string {
  expect(result.found, 'expected a miss').toBe(false);
  return result.found ? '' : result.reason;
}

describe('parseImageReference', () => {
  it.each([
    ['busybox', 'docker.io', 'registry-1.docker.io', 'library/busybox', 'latest', undefined],
    ['team/app:1', 'docker.io', 'registry-1.docker.io', 'team/app', '1', undefined],
    ['docker.io/busybox', 'docker.io', 'registry-1.docker.io', 'library/busybox', 'latest', undefined],
    ['index.docker.io/library/busybox:1.36', 'docker.io', 'registry-1.docker.io', 'library/busybox', '1.36', undefined],
    ['localhost/app', 'localhost', 'localhost', 'app', 'latest', undefined],
    ['localhost:5000/x', 'localhost:5000', 'localhost:5000', 'x', 'latest', undefined],
    ['registry.example:5000/team/sub/app:2.0-rc.1', 'registry.example:5000', 'registry.example:5000', 'team/sub/app', '2.0-rc.1', undefined],
    ['127.0.0.1:5000/a__b/c-d.e', '127.0.0.1:5000', '127.0.0.1:5000', 'a__b/c-d.e', 'latest', undefined],
    ['[::1]:5000/app:1', '[::1]:5000', '[::1]:5000', 'app', '1', undefined],
    ['Registry.Example/app', 'Registry.Example', 'Registry.Example', 'app', 'latest', undefined],
    [`ghcr.io/org/app@${DIGEST}`, 'ghcr.io', 'ghcr.io', 'org/app', undefined, DIGEST],
    [`app:1@${DIGEST}`, 'docker.io', 'registry-1.docker.io', 'library/app', '1', DIGEST],
  ])('parses %s', (image, domain, apiHost, repository, tag, digest) => {
    const reference = parseImageReference(image);
    expect(reference.domain).toBe(domain);
    expect(reference.apiHost).toBe(apiHost);
    expect(reference.repository).toBe(repository);
    expect(reference.tag).toBe(tag);
    expect(reference.digest).toBe(digest);
  });

  it.each([
    ['UPPER', 'the repository "library/UPPER" must be lowercase'],
    ['app:', 'the tag "" is invalid'],
    ['app:bad tag', 'the tag "bad tag" is invalid'],
    ['app@sha256:xyz', 'the digest "sha256:xyz" is not of the form algorithm:hex'],
    ['team//app', 'the path component ""'],
    ['-app', 'the path component "-app"'],
    [':1', 'the repository name is missing'],
    ['registry.example:port/app', 'the registry "registry.example:port" is not a valid host[:port]'],
    [`registry.example/${'a'.repeat(250)}`, 'the name is 267 characters long, more than the maximum of 255'],
  ])('rejects %s', (image, problem) => {
    expect(() => parseImageReference(image)).toThrow(`Invalid image reference ${JSON.stringify(image)}: ${problem}`);
  });
});

describe('credential keys', () => {
  it.each([
    ['https://index.docker.io/v1/', 'index.docker.io'],
    ['registry.example:5000', 'registry.example:5000'],
    ['http://registry.example/v2/', 'registry.example'],
    ['registry.example/team', 'registry.example/team'],
  ])('reduces %s to %s', (key, matchKey) => {
    expect(credentialMatchKey(key)).toBe(matchKey);
  });

  it.each([
    ['registry.example', 'registry.example/team/app', true],
    ['registry.example/team', 'registry.example/team/app', true],
    ['registry.example/other', 'registry.example/team/app', false],
    ['*.example', 'registry.example/app', true],
    ['*.example', 'a.registry.example/app', false],
    ['registry.example:5000', 'registry.example/app', false],
    ['registry.example', 'registry.example:5000/app', false],
    ['Registry.Example', 'registry.example/app', true],
  ])('matches key %s against %s: %s', (key, image, expected) => {
    expect(credentialKeyMatches(key, image)).toBe(expected);
  });
});

describe('loadRegistryCredentials', () => {
  let directory: string;
  const base64 = (text: string): string => Buffer.from(text).toString('base64');
  const write = (name: string, text: string): string => {
    const file = path.join(directory, name);
    writeFileSync(file, text);
    return file;
  };

  beforeAll(() => {
    directory = mkdtempSync(path.join(tmpdir(), 'tandem-registry-auth-'));
  });

  afterAll(() => {
    rmSync(directory, { recursive: true, force: true });
  });

  it('reads auth and username/password entries', async () => {
    const file = write(
      'config.json',
      JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: base64('hub:pass:with:colons') },
          'registry.example': { username: 'user', password: 'pw' },
          'helper.example': {},
        },
        credsStore: 'desktop',
      }),
    );
    const credentials = await loadRegistryCredentials([file]);
    expect(credentials.size).toBe(2);
    const [hub] = credentials.lookup(parseImageReference('busybox'));
    expect(hub).toEqual({ registryKey: 'https://index.docker.io/v1/', username: 'hub', password: 'pass:with:colons', origin: file });
    expect(credentials.lookup(parseImageReference('registry.example/app')).map((entry) => entry.username)).toEqual(['user']);
    expect(credentials.lookup(parseImageReference('helper.example/app'))).toEqual([]);
  });

  it('reads Secrets from YAML, with data and stringData', async () => {
    const config = JSON.stringify({ auths: { 'registry.example': { auth: base64('a:1') } } });
    const file = write(
      'secrets.yaml',
      `apiVersion: v1\nkind: Secret\nmetadata: {name: first, namespace: prod}\ntype: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: ${base64(config)}\n---\n` +
        `apiVersion: v1\nkind: Secret\nmetadata: {name: second}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '${JSON.stringify({ auths: { 'registry.example': { username: 'b', password: '2' } } })}'\n---\n` +
        `apiVersion: v1\nkind: Secret\nmetadata: {name: legacy}\ntype: kubernetes.io/dockercfg\ndata:\n  .dockercfg: ${base64(JSON.stringify({ 'registry.example': { auth: base64('c:3') } }))}\n`,
    );
    const credentials = await loadRegistryCredentials([file]);
    const reference = parseImageReference('registry.example/app');
    expect(credentials.lookup(reference).map((entry) => entry.username)).toEqual(['a', 'b', 'c']);
    // The pod's own pull secrets come first, in the order it lists them.
    expect(credentials.lookup(reference, { namespace: 'prod', imagePullSecrets: ['legacy', 'second'] }).map((entry) => entry.username)).toEqual(['c', 'b', 'a']);
    // A Secret of another namespace is not the pod's own.
    expect(credentials.lookup(reference, { namespace: 'dev', imagePullSecrets: ['first'] }).map((entry) => entry.username)).toEqual(['a', 'b', 'c']);
    expect(credentials.lookup(reference).map((entry) => entry.origin)).toEqual([`Secret prod/first in ${file}`, `Secret second in ${file}`, `Secret legacy in ${file}`]);
    expect(credentials.missingPullSecrets({ imagePullSecrets: ['second', 'absent'] })).toEqual(['absent']);
  });

  it('reads a List of Secrets', async () => {
    const secret = { kind: 'Secret', metadata: { name: 's' }, type: 'kubernetes.io/dockerconfigjson', stringData: { '.dockerconfigjson': JSON.stringify({ auths: { 'r.example': { auth: base64('u:p') } } }) } };
    const credentials = await loadRegistryCredentials([write('list.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [secret] }))]);
    expect(credentials.size).toBe(1);
  });

  it('puts longer keys first', async () => {
    const file = write('paths.json', JSON.stringify({ auths: { 'r.example': { auth: base64('host:1') }, 'r.example/team': { auth: base64('team:2') } } }));
    const credentials = await loadRegistryCredentials([file]);
    expect(credentials.lookup(parseImageReference('r.example/team/app')).map((entry) => entry.username)).toEqual(['team', 'host']);
    expect(credentials.lookup(parseImageReference('r.example/other/app')).map((entry) => entry.username)).toEqual(['host']);
  });

  it.each([
    ['opaque.yaml', 'apiVersion: v1\nkind: Secret\nmetadata: {name: o}\ntype: Opaque\ndata: {a: b}\n', 'Secret o in FILE has type "Opaque", which contains no registry credentials'],
    ['nameless.yaml', 'kind: Secret\ntype: kubernetes.io/dockerconfigjson\n', 'The Secret in FILE has no metadata.name'],
    ['nodata.yaml', 'kind: Secret\nmetadata: {name: regcred}\ntype: kubernetes.io/dockerconfigjson\n', 'Secret regcred in FILE has no .dockerconfigjson in data or stringData'],
    ['colon.json', JSON.stringify({ auths: { 'r.example': { auth: base64('nocolon') } } }), 'Invalid auth of registry "r.example" in FILE: the base64 text must decode to user:password'],
    ['base64.json', JSON.stringify({ auths: { 'r.example': { auth: '%%%' } } }), 'The auth of registry "r.example" in FILE is not valid base64'],
    ['auths.json', JSON.stringify({ auths: [] }), 'Invalid docker config in FILE: "auths" must be an object'],
    ['other.yaml', 'apiVersion: v1\nkind: ConfigMap\n', 'FILE is neither a docker config.json'],
    ['empty.yaml', '', 'The --registry-auth file FILE is empty'],
  ])('rejects %s', async (name, text, message) => {
    const file = write(name, text);
    await expect(loadRegistryCredentials([file])).rejects.toThrow(message.replace('FILE', file));
  });

  it('rejects a missing file', async () => {
    const file = path.join(directory, 'absent.json');
    await expect(loadRegistryCredentials([file])).rejects.toThrow(`Cannot read the --registry-auth file ${file}`);
  });
});

describe('parseWwwAuthenticate', () => {
  it('reads a Bearer challenge', () => {
    expect(parseWwwAuthenticate('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/app:pull"')).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:team/app:pull' } },
    ]);
  });

  it('reads several challenges and escapes', () => {
    expect(parseWwwAuthenticate('Basic realm="a \\"b\\"", Bearer realm=https://t.example/token, error=invalid_token')).toEqual([
      { scheme: 'basic', params: { realm: 'a "b"' } },
      { scheme: 'bearer', params: { realm: 'https://t.example/token', error: 'invalid_token' } },
    ]);
  });
});

describe('platforms', () => {
  const entry = (architecture: string, variant?: string): Descriptor => ({
    mediaType: OCI_MANIFEST,
    digest: `sha256:${architecture}${variant ?? ''}`,
    size: 1,
    platform: variant === undefined ? { os: 'linux', architecture } : { os: 'linux', architecture, variant },
  });

  it('parses os/arch/variant', () => {
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(() => parsePlatform('linux')).toThrow('Invalid --platform "linux"');
    expect(() => parsePlatform('linux/arm/v7/x')).toThrow('Invalid --platform');
  });

  it('normalizes architectures and variants', () => {
    const entries = [entry('arm', 'v6'), entry('arm', 'v7'), entry('arm64', 'v8'), entry('amd64')];
    expect(selectPlatform(entries, { os: 'linux', architecture: 'x86_64' })?.digest).toBe('sha256:amd64');
    expect(selectPlatform(entries, { os: 'linux', architecture: 'aarch64' })?.digest).toBe('sha256:arm64v8');
    expect(selectPlatform(entries, { os: 'linux', architecture: 'arm' })?.digest).toBe('sha256:armv7');
    expect(selectPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v6' })?.digest).toBe('sha256:armv6');
    expect(selectPlatform(entries, { os: 'windows', architecture: 'amd64' })).toBeUndefined();
  });

  it('skips entries without a platform', () => {
    const attestation: Descriptor = { mediaType: OCI_MANIFEST, digest: 'sha256:x', size: 1 };
    expect(selectPlatform([attestation, entry('amd64')], { os: 'linux', architecture: 'amd64' })?.digest).toBe('sha256:amd64');
  });
});

describe('effectivePullPolicy and PullPolicyResolver', () => {
  it.each([
    ['app', undefined, 'Always'],
    ['app:latest', undefined, 'Always'],
    ['app:1', undefined, 'IfNotPresent'],
    [`app@${DIGEST}`, undefined, 'IfNotPresent'],
    ['app:1', 'Always', 'Always'],
    ['app', 'Never', 'Never'],
  ])('gives %s with %s the policy %s', (image, policy, expected) => {
    expect(effectivePullPolicy(image, policy)).toBe(expected);
  });

  class Recorder implements ImageConfigResolver {
    constructor(
      private readonly name: string,
      private readonly calls: string[],
      private readonly found: boolean,
    ) {}

    async resolve(): Promise<ImageConfigResult> {
      this.calls.push(this.name);
      return this.found ? { found: true, config: { entrypoint: [this.name], cmd: [], source: this.name } } : { found: false, reason: `${this.name} missed` };
    }
  }

  it.each([
    ['app:1', undefined, ['local']],
    ['app:1', 'Always', ['registry']],
    ['app', undefined, ['registry']],
    ['app', 'IfNotPresent', ['local']],
  ])('asks first for %s with %s: %j', async (image, policy, expected) => {
    const calls: string[] = [];
    const resolver = new PullPolicyResolver(new Recorder('registry', calls, true), new Recorder('local', calls, true));
    await resolver.resolve(request(image, { imagePullPolicy: policy }));
    expect(calls).toEqual(expected);
  });

  it('falls back and joins the reasons', async () => {
    const calls: string[] = [];
    const resolver = new PullPolicyResolver(new Recorder('registry', calls, false), new Recorder('local', calls, false));
    const reason = reasonOf(await resolver.resolve(request('app:1')));
    expect(calls).toEqual(['local', 'registry']);
    expect(reason).toBe('local missed; registry missed');
  });
});

describe('RegistryClient plain HTTP policy', () => {
  const client = new RegistryClient({ timeoutMs: 1000, insecureRegistries: ['registry.lan', 'other.lan:5000'] });

  it.each([
    ['localhost:5000', true],
    ['127.0.0.5', true],
    ['[::1]:5000', true],
    ['registry.lan:443', true],
    ['other.lan:5000', true],
    ['other.lan:5001', false],
    ['registry.example', false],
  ])('allows plain HTTP to %s: %s', (host, expected) => {
    expect(client.allowsPlainHttp(host)).toBe(expected);
  });
});

// A stand-in registry with the Bearer token flow of Docker Hub and others. /v2/ responds 401 with a
// Bearer challenge, /token hands out tokens, and blobs redirect to a storage path on another origin.
describe('RegistryResolver with a Bearer token registry', () => {
  let server: Server;
  let port: number;
  let secureServer: Server;
  let securePort: number;
  let directory: string;
  const log: { path: string; authorization: string | undefined; host: string | undefined }[] = [];
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Entrypoint: ['/bearer'], Cmd: ['go'] } }));
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length }, layers: [] }));
  const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: manifestDigest, size: manifest.length, platform: { os: 'linux', architecture: 'amd64' } }] }));
  const tampered = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Entrypoint: ['/evil'] } }));
  const basic = `Basic ${Buffer.from('bob:hunter2').toString('base64')}`;

  function handle(incoming: IncomingMessage, response: ServerResponse): void {
    const url = new URL(incoming.url ?? '/', `http://${incoming.headers.host}`);
    log.push({ path: url.pathname, authorization: incoming.headers.authorization, host: incoming.headers.host });

    if (url.pathname === '/token') {
      const scope = url.searchParams.get('scope') ?? '';
      const service = url.searchParams.get('service');
      if (service !== 'stand-in') {
        response.writeHead(400).end();
      } else if (incoming.headers.authorization === basic) {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `user-token ${scope}` }));
      } else if (incoming.headers.authorization === undefined && scope === 'repository:public/app:pull') {
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: `anonymous-token ${scope}` }));
      } else {
        response.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"incorrect username or password"}');
      }
      return;
    }
    if (url.pathname.startsWith('/storage/')) {
      const body = url.pathname.endsWith('tampered') ? tampered : config;
      response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
      return;
    }
    if (url.pathname.startsWith('/v2/slow/')) {
      // Never responds, so the client's timeout ends the request.
      return;
    }

    const match = /^\/v2\/(.+)\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
    const repository = match?.[1] ?? '';
    const expected = `Bearer ${repository === 'public/app' ? 'anonymous' : 'user'}-token repository:${repository}:pull`;
    if (incoming.headers.authorization !== expected) {
      response
        .writeHead(401, { 'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="stand-in",scope="repository:${repository}:pull"`, 'content-type': 'application/json' })
        .end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
      return;
    }
    if (match?.[2] === 'manifests') {
      const body = match[3] === 'index' ? index : manifest;
      response.writeHead(200, { 'content-type': match[3] === 'index' ? OCI_INDEX : OCI_MANIFEST }).end(body);
      return;
    }
    if (match?.[2] === 'blobs') {
      const target = repository === 'team/tampered' ? 'tampered' : 'config';
      // localhost and 127.0.0.1 are different origins, like a registry and its storage service.
      response.writeHead(307, { location: `http://localhost:${port}/storage/${target}` }).end();
      return;
    }
    response.writeHead(404).end();
  }

  beforeAll(async () => {
    directory = mkdtempSync(path.join(tmpdir(), 'tandem-registry-bearer-'));
    server = createServer(handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    port = typeof address === 'object' && address !== null ? address.port : 0;

    // The same registry over HTTPS with the self-signed test certificate.
    secureServer = createHttpsServer({ key: TEST_KEY, cert: TEST_CERTIFICATE }, handle);
    await new Promise<void>((resolve) => secureServer.listen(0, '127.0.0.1', resolve));
    const secureAddress = secureServer.address();
    securePort = typeof secureAddress === 'object' && secureAddress !== null ? secureAddress.port : 0;
  });

  afterAll(async () => {
    server.closeAllConnections();
    secureServer.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await new Promise((resolve) => secureServer.close(resolve));
    rmSync(directory, { recursive: true, force: true });
  });

  async function withCredentials(): Promise<RegistryResolver> {
    const file = path.join(directory, 'config.json');
    writeFileSync(file, JSON.stringify({ auths: { [`127.0.0.1:${port}`]: { username: 'bob', password: 'hunter2' } } }));
    return new RegistryResolver({ credentials: await loadRegistryCredentials([file]) });
  }

  it('fetches a token with the credentials', async () => {
    log.length = 0;
    const result = await (await withCredentials()).resolve(request(`127.0.0.1:${port}/team/app:1`));
    expect(configOf(result).entrypoint).toEqual(['/bearer']);
    expect(configOf(result).cmd).toEqual(['go']);
    expect(log.filter((entry) => entry.path === '/token').map((entry) => entry.authorization)).toEqual([basic]);
  });

  it('drops Authorization on a redirect to another origin', async () => {
    log.length = 0;
    await (await withCredentials()).resolve(request(`127.0.0.1:${port}/team/app:2`));
    const storage = log.filter((entry) => entry.path.startsWith('/storage/'));
    expect(storage).toHaveLength(1);
    expect(storage[0]!.host).toBe(`localhost:${port}`);
    expect(storage[0]!.authorization).toBeUndefined();
  });

  it('gets an anonymous token for a public image', async () => {
    const result = await new RegistryResolver().resolve(request(`127.0.0.1:${port}/public/app:1`));
    expect(configOf(result).entrypoint).toEqual(['/bearer']);
  });

  it('reuses the token and caches config blobs', async () => {
    const resolver = await withCredentials();
    await resolver.resolve(request(`127.0.0.1:${port}/team/app:1`));
    log.length = 0;
    await resolver.resolve(request(`127.0.0.1:${port}/team/app:index`));
    await resolver.resolve(request(`127.0.0.1:${port}/team/app:1`));
    // The index and its manifest are new, the config blob and the token are not.
    expect(log.map((entry) => entry.path)).toEqual(['/v2/team/app/manifests/index', `/v2/team/app/manifests/${manifestDigest}`]);
  });

  it('names the rejected user from the token server', async () => {
    const file = path.join(directory, 'wrong.json');
    writeFileSync(file, JSON.stringify({ auths: { [`127.0.0.1:${port}`]: { username: 'bob', password: 'wrong' } } }));
    const resolver = new RegistryResolver({ credentials: await loadRegistryCredentials([file]) });
    const reason = reasonOf(await resolver.resolve(request(`127.0.0.1:${port}/team/app:1`)));
    expect(reason).toContain(`registry 127.0.0.1:${port} rejected the credentials of user bob from ${file} for image 127.0.0.1:${port}/team/app:1`);
  });

  it('reports a rejected anonymous token', async () => {
    const reason = reasonOf(await new RegistryResolver().resolve(request(`127.0.0.1:${port}/team/app:1`)));
    expect(reason).toContain(`registry 127.0.0.1:${port} requires credentials to read image 127.0.0.1:${port}/team/app:1`);
    expect(reason).toContain(`the token server http://127.0.0.1:${port}/token of registry 127.0.0.1:${port} rejected the request for an anonymous token with 401`);
  });

  it('rejects a config blob that does not match its digest', async () => {
    const reason = reasonOf(await (await withCredentials()).resolve(request(`127.0.0.1:${port}/team/tampered:1`)));
    expect(reason).toContain(`the image config ${configDigest} of 127.0.0.1:${port}/team/tampered:1 does not match its digest`);
  });

  it('times out and then fails at once', async () => {
    const resolver = new RegistryResolver({ timeoutMs: 300 });
    const started = Date.now();
    const reason = reasonOf(await resolver.resolve(request(`127.0.0.1:${port}/slow/app:1`)));
    expect(reason).toContain(`registry 127.0.0.1:${port} sent no complete response within 0.3 s to GET http://127.0.0.1:${port}/v2/slow/app/manifests/1`);
    expect(reason).toContain('raise --registry-timeout');
    const again = Date.now();
    const second = reasonOf(await resolver.resolve(request(`127.0.0.1:${port}/slow/app:2`)));
    expect(second).toContain('sent no complete response within 0.3 s');
    expect(Date.now() - again).toBeLessThan(100);
    expect(again - started).toBeGreaterThanOrEqual(250);
  });

  it('names the CA fix for an untrusted certificate', async () => {
    const reason = reasonOf(await new RegistryResolver().resolve(request(`127.0.0.1:${securePort}/team/app:1`)));
    expect(reason).toContain(`cannot connect to registry 127.0.0.1:${securePort} over HTTPS (`);
    expect(reason).toMatch(/self.signed certificate/i);
    expect(reason).toContain('set NODE_EXTRA_CA_CERTS to the PEM file of the CA that signed the registry certificate');
  });

  it('trusts the CA from NODE_EXTRA_CA_CERTS in the CLI', async () => {
    const certificate = path.join(directory, 'ca.pem');
    writeFileSync(certificate, TEST_CERTIFICATE);
    const auth = path.join(directory, 'secure.json');
    writeFileSync(auth, JSON.stringify({ auths: { [`127.0.0.1:${securePort}`]: { username: 'bob', password: 'hunter2' } } }));
    const pod = JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'app', image: `127.0.0.1:${securePort}/team/app:1` }] } });
    // The CLI runs asynchronously, because the stand-in registry serves from this process.
    const child = spawn(process.execPath, [CLI, 'inject', '--registry-auth', auth, '-'], { env: { ...process.env, NODE_EXTRA_CA_CERTS: certificate } });
    const result = { stdout: '', stderr: '', status: null as number | null };
    child.stdout.on('data', (chunk: Buffer) => (result.stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (result.stderr += chunk.toString()));
    child.stdin.end(pod);
    result.status = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(result.stderr).not.toContain('error');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('- /bearer');
    expect(result.stderr).toContain(`image config from registry 127.0.0.1:${securePort}`);
  });
});
