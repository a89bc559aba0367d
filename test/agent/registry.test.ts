import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageConfig } from '../../agent/inject/argv.js';
import {
  AnnotationResolver,
  resolveImageConfig,
  type ImageConfigRequest,
  type ImageConfigResolver,
  type ImageConfigResult,
} from '../../agent/inject/image-config.js';
import { parseManifests } from '../../agent/inject/io.js';
import type { KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { loadRegistryCredentials, RegistryCredentials } from '../../agent/inject/registry/credentials.js';
import { DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from '../../agent/inject/registry/manifest.js';
import { RegistryResolver, type RegistryResolverOptions } from '../../agent/inject/registry/resolver.js';
import { runInject } from '../../agent/inject/run.js';

// These tests run Debian's docker-registry (the CNCF distribution registry 2.8) on 127.0.0.1, once
// open and once with htpasswd Basic auth, and push test images into it with the distribution API.
const REGISTRY_PROGRAM = '/usr/bin/docker-registry';
const CLI = path.resolve('dist/agent/cli.js');
const USER = 'alice';
const PASSWORD = 'correct horse';

interface Registry {
  process: ChildProcess;
  /** `127.0.0.1:PORT` */
  host: string;
  log: string[];
}

interface ImageSpec {
  entrypoint: string[] | null;
  cmd: string[] | null;
  architecture?: string;
}

let directory: string;
let open: Registry;
let secured: Registry;
/** A port that nothing listens on, for the unreachable registry. */
let closedPort: number;

function sha256(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function startRegistry(name: string, htpasswd: string | undefined): Promise<Registry> {
  const port = await freePort();
  const root = path.join(directory, name);
  mkdirSync(root);
  const auth = htpasswd === undefined ? '' : `auth:\n  htpasswd:\n    realm: tandem-test\n    path: ${htpasswd}\n`;
  const config = path.join(root, 'config.yml');
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(root, 'data')}\n` +
      `http:\n  addr: 127.0.0.1:${port}\n  secret: tandem-test-secret\n${auth}`,
  );

  const child = spawn(REGISTRY_PROGRAM, ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const registry: Registry = { process: child, host: `127.0.0.1:${port}`, log: [] };
  child.stdout!.on('data', (chunk: Buffer) => registry.log.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => registry.log.push(chunk.toString()));

  // The registry is ready when /v2/ responds, with 200 when open or 401 with htpasswd.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const response = await fetch(`http://${registry.host}/v2/`);
      if (response.status === 200 || response.status === 401) {
        return registry;
      }
    } catch {
      // Not listening yet.
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill();
      throw new Error(`docker-registry on ${registry.host} did not start: ${registry.log.join('')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function stopRegistry(registry: Registry | undefined): Promise<void> {
  if (registry === undefined || registry.process.exitCode !== null) {
    return;
  }
  const exited = new Promise((resolve) => registry.process.once('exit', resolve));
  registry.process.kill('SIGTERM');
  await exited;
}

function basicHeader(): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };
}

// Uploads a blob with the two-step upload of the distribution API: POST opens an upload session,
// and PUT with the digest sends the whole body and completes it.
async function pushBlob(registry: Registry, repository: string, body: Buffer, headers: Record<string, string>): Promise<string> {
  const digest = sha256(body);
  const start = await fetch(`http://${registry.host}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
  expect(start.status, `POST upload of ${repository}`).toBe(202);
  const location = new URL(start.headers.get('location')!, `http://${registry.host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', headers: { ...headers, 'content-type': 'application/octet-stream' }, body });
  expect(put.status, `PUT blob ${digest} of ${repository}`).toBe(201);
  return digest;
}

async function pushManifest(registry: Registry, repository: string, reference: string, mediaType: string, manifest: object, headers: Record<string, string>): Promise<string> {
  const body = Buffer.from(JSON.stringify(manifest));
  const response = await fetch(`http://${registry.host}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': mediaType },
    body,
  });
  expect(response.status, `PUT manifest ${repository}:${reference}: ${await response.text()}`).toBe(201);
  return sha256(body);
}

/** Pushes an image with one empty layer and returns the manifest's descriptor. */
async function pushImage(
  registry: Registry,
  repository: string,
  tag: string | undefined,
  image: ImageSpec,
  options: { docker?: boolean; headers?: Record<string, string> } = {},
): Promise<{ digest: string; size: number; mediaType: string }> {
  const headers = options.headers ?? {};
  const config = Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      config: { Entrypoint: image.entrypoint, Cmd: image.cmd, Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: [sha256(Buffer.alloc(1024))] },
    }),
  );
  const layer = gzipSync(Buffer.alloc(1024));
  const configDigest = await pushBlob(registry, repository, config, headers);
  const layerDigest = await pushBlob(registry, repository, layer, headers);

  const mediaType = options.docker === true ? DOCKER_MANIFEST : OCI_MANIFEST;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: options.docker === true ? DOCKER_CONFIG : OCI_CONFIG, digest: configDigest, size: config.length },
    layers: [
      {
        mediaType: options.docker === true ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: layerDigest,
        size: layer.length,
      },
    ],
  };
  const size = Buffer.byteLength(JSON.stringify(manifest));
  const digest = await pushManifest(registry, repository, tag ?? sha256(Buffer.from(JSON.stringify(manifest))), mediaType, manifest, headers);
  return { digest, size, mediaType };
}

/** Pushes an image index with one image per architecture, each with its own ENTRYPOINT. */
async function pushIndex(registry: Registry, repository: string, tag: string, architectures: string[], options: { docker?: boolean } = {}): Promise<void> {
  const manifests = [];
  for (const architecture of architectures) {
    const [arch, variant] = architecture.split('/') as [string, string | undefined];
    const pushed = await pushImage(registry, repository, undefined, { entrypoint: [`/bin/${arch}${variant ?? ''}`], cmd: ['run'], architecture: arch }, options);
    manifests.push({ mediaType: pushed.mediaType, digest: pushed.digest, size: pushed.size, platform: { os: 'linux', architecture: arch, ...(variant ? { variant } : {}) } });
  }
  const mediaType = options.docker === true ? DOCKER_MANIFEST_LIST : OCI_INDEX;
  await pushManifest(registry, repository, tag, mediaType, { schemaVersion: 2, mediaType, manifests }, {});
}

function request(image: string, overrides: Partial<ImageConfigRequest> = {}): ImageConfigRequest {
  return { containerName: 'app', image, need: 'entrypoint and cmd', annotations: {}, owner: 'Pod/p', ...overrides };
}

function resolver(options: RegistryResolverOptions = {}): RegistryResolver {
  return new RegistryResolver(options);
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

function dockerConfig(host: string, password = PASSWORD): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${USER}:${password}`).toString('base64') } } });
}

beforeAll(async () => {
  if (!existsSync(REGISTRY_PROGRAM)) {
    throw new Error(`${REGISTRY_PROGRAM} is missing. Install the Debian package docker-registry, as .ci/install does.`);
  }
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-registry-'));
  const htpasswd = spawnSync('htpasswd', ['-Bbn', USER, PASSWORD], { encoding: 'utf8' });
  if (htpasswd.status !== 0) {
    throw new Error(`htpasswd failed (${htpasswd.error?.message ?? htpasswd.stderr}). Install the Debian package apache2-utils, as .ci/install does.`);
  }
  const htpasswdFile = path.join(directory, 'htpasswd');
  writeFileSync(htpasswdFile, htpasswd.stdout);

  [open, secured, closedPort] = await Promise.all([startRegistry('open', undefined), startRegistry('secured', htpasswdFile), freePort()]);

  await pushImage(open, 'tandem-test/app', '1', { entrypoint: ['/bin/app', '--base=$(HOME)'], cmd: ['serve', '--port=80'] });
  await pushImage(open, 'tandem-test/shell', '1', { entrypoint: null, cmd: ['sh'] }, { docker: true });
  await pushImage(open, 'tandem-test/latest', 'latest', { entrypoint: ['/bin/latest'], cmd: null });
  await pushIndex(open, 'tandem-test/multi', '1', ['arm64/v8', 'amd64']);
  await pushIndex(open, 'tandem-test/multi-docker', '1', ['amd64', 'arm/v7'], { docker: true });
  await pushIndex(open, 'tandem-test/arm-only', '1', ['arm64']);
  await pushImage(secured, 'private/app', '1', { entrypoint: ['/bin/private'], cmd: ['--secret-mode'] }, { headers: basicHeader() });
}, 120_000);

afterAll(async () => {
  await Promise.all([stopRegistry(open), stopRegistry(secured)]);
  if (directory !== undefined) {
    rmSync(directory, { recursive: true, force: true });
  }
});

describe('RegistryResolver with an open registry', () => {
  it('reads ENTRYPOINT and CMD of an OCI image', async () => {
    const result = await resolver().resolve(request(`${open.host}/tandem-test/app:1`));
    expect(configOf(result).entrypoint).toEqual(['/bin/app', '--base=$(HOME)']);
    expect(configOf(result).cmd).toEqual(['serve', '--port=80']);
    expect(configOf(result).source).toMatch(new RegExp(`^registry ${open.host} \\(manifest sha256:[0-9a-f]{64}, linux/amd64\\)$`));
  });

  it('reads a Docker schema 2 image with a null Entrypoint', async () => {
    const result = await resolver().resolve(request(`${open.host}/tandem-test/shell:1`));
    expect(configOf(result).entrypoint).toEqual([]);
    expect(configOf(result).cmd).toEqual(['sh']);
  });

  it('takes latest when the tag is missing', async () => {
    const result = await resolver().resolve(request(`${open.host}/tandem-test/latest`));
    expect(configOf(result).entrypoint).toEqual(['/bin/latest']);
    expect(configOf(result).cmd).toEqual([]);
  });

  it('picks linux/amd64 from an OCI index', async () => {
    const result = await resolver().resolve(request(`${open.host}/tandem-test/multi:1`));
    expect(configOf(result).entrypoint).toEqual(['/bin/amd64']);
  });

  it('picks linux/amd64 from a Docker manifest list', async () => {
    const result = await resolver().resolve(request(`${open.host}/tandem-test/multi-docker:1`));
    expect(configOf(result).entrypoint).toEqual(['/bin/amd64']);
  });

  it('picks the requested platform', async () => {
    const arm64 = await resolver({ platform: { os: 'linux', architecture: 'arm64' } }).resolve(request(`${open.host}/tandem-test/multi:1`));
    expect(configOf(arm64).entrypoint).toEqual(['/bin/arm64v8']);
    expect(configOf(arm64).source).toContain('linux/arm64');
    const arm = await resolver({ platform: { os: 'linux', architecture: 'arm' } }).resolve(request(`${open.host}/tandem-test/multi-docker:1`));
    expect(configOf(arm).entrypoint).toEqual(['/bin/armv7']);
  });

  it('names the platforms an index lacks', async () => {
    const reason = reasonOf(await resolver().resolve(request(`${open.host}/tandem-test/arm-only:1`)));
    expect(reason).toContain(`the image index of ${open.host}/tandem-test/arm-only:1 has no manifest for linux/amd64 (it has linux/arm64)`);
    expect(reason).toContain('--platform');
  });

  it('reads an image by digest', async () => {
    const tagged = await fetch(`http://${open.host}/v2/tandem-test/app/manifests/1`, { headers: { accept: OCI_MANIFEST } });
    const digest = sha256(Buffer.from(await tagged.arrayBuffer()));
    const result = await resolver().resolve(request(`${open.host}/tandem-test/app@${digest}`));
    expect(configOf(result).entrypoint).toEqual(['/bin/app', '--base=$(HOME)']);
    expect(configOf(result).source).toContain(digest);
  });

  it('reports an unknown digest with 404', async () => {
    const wrong = `sha256:${'0'.repeat(64)}`;
    const reason = reasonOf(await resolver().resolve(request(`${open.host}/tandem-test/app@${wrong}`)));
    expect(reason).toContain(`registry ${open.host} has no image ${open.host}/tandem-test/app@${wrong}`);
  });

  it('reports an unknown image with 404', async () => {
    const reason = reasonOf(await resolver().resolve(request(`${open.host}/tandem-test/absent:1`)));
    expect(reason).toContain(`registry ${open.host} has no image ${open.host}/tandem-test/absent:1`);
    expect(reason).toContain('returned 404 Not Found, MANIFEST_UNKNOWN: manifest unknown');
    expect(reason).toContain('check the repository name and the tag');
  });

  it('reports an unknown tag with 404', async () => {
    const reason = reasonOf(await resolver().resolve(request(`${open.host}/tandem-test/app:9`)));
    expect(reason).toContain('MANIFEST_UNKNOWN');
  });

  it('caches the result per image', async () => {
    const shared = resolver();
    const first = await shared.resolve(request(`${open.host}/tandem-test/app:1`));
    const second = await shared.resolve(request(`${open.host}/tandem-test/app:1`, { containerName: 'other' }));
    expect(second).toBe(first);
    const third = await shared.resolve(request(`${open.host}/tandem-test/app`));
    expect(third).not.toBe(first);
  });
});

describe('RegistryResolver with htpasswd Basic auth', () => {
  it('resolves with credentials from a docker config', async () => {
    const file = path.join(directory, 'config.json');
    writeFileSync(file, dockerConfig(secured.host));
    const credentials = await loadRegistryCredentials([file]);
    const result = await resolver({ credentials }).resolve(request(`${secured.host}/private/app:1`));
    expect(configOf(result).entrypoint).toEqual(['/bin/private']);
    expect(configOf(result).cmd).toEqual(['--secret-mode']);
  });

  it('fails with 401 without credentials', async () => {
    const reason = reasonOf(await resolver().resolve(request(`${secured.host}/private/app:1`)));
    expect(reason).toContain(`registry ${secured.host} requires credentials to read image ${secured.host}/private/app:1`);
    expect(reason).toContain('401 Unauthorized');
    expect(reason).toContain('no --registry-auth file has credentials for it');
    expect(reason).toContain("pass the pull secret with --registry-auth FILE");
    expect(reason).toContain("list it in the pod's imagePullSecrets");
  });

  it('names a pull secret the pod lists but nobody gave', async () => {
    const reason = reasonOf(await resolver().resolve(request(`${secured.host}/private/app:1`, { imagePullSecrets: ['regcred'] })));
    expect(reason).toContain('the pod lists imagePullSecrets regcred, which no --registry-auth file contains');
  });

  it('names the user a registry rejected', async () => {
    const file = path.join(directory, 'wrong.json');
    writeFileSync(file, dockerConfig(secured.host, 'wrong password'));
    const credentials = await loadRegistryCredentials([file]);
    const reason = reasonOf(await resolver({ credentials }).resolve(request(`${secured.host}/private/app:1`)));
    expect(reason).toContain(`registry ${secured.host} rejected the credentials of user ${USER} from ${file}`);
    expect(reason).toContain('check the user name and password of the pull secret');
  });

  it('tries the next credential after a rejected one', async () => {
    const wrong = path.join(directory, 'wrong-first.json');
    const right = path.join(directory, 'right-second.json');
    writeFileSync(wrong, dockerConfig(secured.host, 'wrong password'));
    writeFileSync(right, dockerConfig(`http://${secured.host}/v2/`));
    const credentials = await loadRegistryCredentials([wrong, right]);
    const result = await resolver({ credentials }).resolve(request(`${secured.host}/private/app:1`));
    expect(configOf(result).entrypoint).toEqual(['/bin/private']);
  });
});

describe('RegistryResolver failures', () => {
  it('reports a registry that is down', async () => {
    const reason = reasonOf(await resolver().resolve(request(`127.0.0.1:${closedPort}/tandem-test/app:1`)));
    expect(reason).toContain(`cannot connect to registry 127.0.0.1:${closedPort} over HTTPS`);
    expect(reason).toContain(`or plain HTTP (connect ECONNREFUSED 127.0.0.1:${closedPort})`);
    expect(reason).toContain(`to read image 127.0.0.1:${closedPort}/tandem-test/app:1`);
    expect(reason).toContain('--no-registry');
  });

  it('does not contact .invalid registries', async () => {
    const reason = reasonOf(await resolver().resolve(request('registry.invalid/app:1')));
    expect(reason).toBe('registry registry.invalid of image registry.invalid/app:1 is under the reserved domain .invalid, so it was not contacted');
  });

  it('rejects an invalid image reference', async () => {
    await expect(resolver().resolve(request('127.0.0.1:5000/Tandem/App:1'))).rejects.toThrow(/Invalid image reference "127.0.0.1:5000\/Tandem\/App:1": the repository "Tandem\/App" must be lowercase/);
  });

  it('joins the registry reason into the final error', async () => {
    const failure = resolveImageConfig(request(`${secured.host}/private/app:1`), [new AnnotationResolver(), resolver()]);
    await expect(failure).rejects.toThrow(`Cannot find the ENTRYPOINT and CMD of image ${secured.host}/private/app:1 for container app in Pod/p`);
    await expect(failure).rejects.toThrow(`registry ${secured.host} requires credentials`);
    await expect(failure).rejects.toThrow("Add the pod template annotation entrypoint.tandem.dev/app: '[\"/path/to/entrypoint\"]'");
  });
});

/** Counts the requests that reach a resolver, to show that a container with a command needs none. */
class CountingResolver implements ImageConfigResolver {
  readonly images: string[] = [];

  constructor(private readonly inner: ImageConfigResolver) {}

  resolve(request: ImageConfigRequest): Promise<ImageConfigResult> {
    this.images.push(request.image);
    return this.inner.resolve(request);
  }
}

async function inject(pod: object, resolvers: readonly ImageConfigResolver[]): Promise<{ code: number; template: PodTemplateSpec; stderr: string }> {
  const input = path.join(directory, `pod-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(input, JSON.stringify(pod));
  let stdout = '';
  let stderr = '';
  const code = await runInject(
    { input, sidecarSetFiles: [], image: 'localhost/tandem:test', namespace: 'default', keepStdlog: false },
    { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text), resolvers, now: new Date(0) },
  );
  const [output] = code === 0 ? (parseManifests(stdout, 'output') as KubeObject[]) : [];
  return { code, template: output as unknown as PodTemplateSpec, stderr };
}

function pod(container: Record<string, unknown>): object {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers: [{ name: 'app', ...container }] } };
}

describe('tandem inject with a registry', () => {
  it('runs ENTRYPOINT and CMD without command and args', async () => {
    const { code, template, stderr } = await inject(pod({ image: `${open.host}/tandem-test/app:1` }), [new AnnotationResolver(), resolver()]);
    expect(stderr).not.toContain('error');
    expect(code).toBe(0);
    expect(template.spec.containers[0]!.args).toEqual(['/bin/app', '--base=$$(HOME)', 'serve', '--port=80']);
    expect(stderr).toContain(`image config from registry ${open.host} (manifest sha256:`);
  });

  it('runs ENTRYPOINT and args with args alone', async () => {
    const { code, template } = await inject(pod({ image: `${open.host}/tandem-test/app:1`, args: ['check', '$(MODE)'] }), [new AnnotationResolver(), resolver()]);
    expect(code).toBe(0);
    expect(template.spec.containers[0]!.args).toEqual(['/bin/app', '--base=$$(HOME)', 'check', '$(MODE)']);
  });

  it('runs the command without a lookup', async () => {
    const counting = new CountingResolver(resolver());
    const { code, template } = await inject(pod({ image: `127.0.0.1:${closedPort}/tandem-test/app:1`, command: ['/bin/own'], args: ['x'] }), [counting]);
    expect(code).toBe(0);
    expect(template.spec.containers[0]!.args).toEqual(['/bin/own', 'x']);
    expect(counting.images).toEqual([]);
  });

  it('lets the annotation win over the registry', async () => {
    const counting = new CountingResolver(resolver());
    const annotated = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'p', annotations: { 'entrypoint.tandem.dev/app': '["/from/annotation"]' } },
      spec: { containers: [{ name: 'app', image: `${open.host}/tandem-test/app:1` }] },
    };
    const { code, template } = await inject(annotated, [new AnnotationResolver(), counting]);
    expect(code).toBe(0);
    expect(template.spec.containers[0]!.args).toEqual(['/from/annotation']);
    expect(counting.images).toEqual([]);
  });

  it('uses the pull secret the pod lists', async () => {
    const secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'regcred', namespace: 'default' },
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': Buffer.from(dockerConfig(secured.host)).toString('base64') },
    };
    const file = path.join(directory, 'regcred.json');
    writeFileSync(file, JSON.stringify(secret));
    const credentials = await loadRegistryCredentials([file]);
    const privatePod = { ...pod({ image: `${secured.host}/private/app:1` }) } as { spec: Record<string, unknown> };
    privatePod.spec.imagePullSecrets = [{ name: 'regcred' }];
    const { code, template } = await inject(privatePod, [new AnnotationResolver(), resolver({ credentials })]);
    expect(code).toBe(0);
    expect(template.spec.containers[0]!.args).toEqual(['/bin/private', '--secret-mode']);
  });

  it('fails naming the registry without credentials', async () => {
    const { code, stderr } = await inject(pod({ image: `${secured.host}/private/app:1` }), [new AnnotationResolver(), resolver({ credentials: new RegistryCredentials() })]);
    expect(code).toBe(1);
    expect(stderr).toContain(`Cannot find the ENTRYPOINT and CMD of image ${secured.host}/private/app:1 for container app in Pod/p`);
    expect(stderr).toContain(`registry ${secured.host} requires credentials`);
  });
});

describe('tandem inject CLI with a registry', () => {
  function runCli(args: string[], input: string): { status: number | null; stdout: string; stderr: string } {
    const result = spawnSync(process.execPath, [CLI, 'inject', ...args, '-'], { input, encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: '0' }, timeout: 60_000 });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  const privatePod = (host: string): string =>
    JSON.stringify({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'prod' },
      spec: {
        template: {
          spec: {
            imagePullSecrets: [{ name: 'regcred' }],
            containers: [{ name: 'web', image: `${host}/private/app:1`, imagePullPolicy: 'Always', args: ['--verbose'] }],
          },
        },
      },
    });

  beforeAll(() => {
    if (!existsSync(CLI)) {
      throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
    }
  });

  it('reads a private image with a pull Secret', () => {
    const file = path.join(directory, 'regcred.yaml');
    writeFileSync(
      file,
      `apiVersion: v1\nkind: Secret\nmetadata:\n  name: regcred\n  namespace: prod\ntype: kubernetes.io/dockerconfigjson\n` +
        `data:\n  .dockerconfigjson: ${Buffer.from(dockerConfig(secured.host)).toString('base64')}\n`,
    );
    const result = runCli(['--registry-auth', file], privatePod(secured.host));
    expect(result.stderr).not.toContain('error');
    expect(result.status).toBe(0);
    const [deployment] = parseManifests(result.stdout, 'CLI output') as [{ spec: { template: PodTemplateSpec } }];
    expect(deployment.spec.template.spec.containers[0]!.args).toEqual(['/bin/private', '--verbose']);
    expect(result.stderr).toContain(`image config from registry ${secured.host} (manifest sha256:`);
  });

  it('fails on a private image without credentials', () => {
    const result = runCli([], privatePod(secured.host));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`Cannot find the ENTRYPOINT of image ${secured.host}/private/app:1 for container web in Deployment/web`);
    expect(result.stderr).toContain(`registry ${secured.host} requires credentials to read image ${secured.host}/private/app:1`);
    expect(result.stderr).toContain('the pod lists imagePullSecrets regcred, which no --registry-auth file contains');
  });

  it('skips the registry with --no-registry', () => {
    const result = runCli(['--no-registry'], privatePod(secured.host));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('Cannot find the ENTRYPOINT of image');
    expect(result.stderr).not.toContain(`registry ${secured.host}`);
  });

  it('rejects an invalid --registry-auth file', () => {
    const file = path.join(directory, 'not-auth.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n');
    const result = runCli(['--registry-auth', file], privatePod(secured.host));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`tandem inject: error: ${file} is neither a docker config.json`);
  });

  it.each([
    [['--platform', 'amd64'], 'Invalid --platform "amd64": expected os/architecture[/variant]'],
    [['--registry-timeout', '0'], 'Invalid --registry-timeout "0"'],
    [['--insecure-registry', 'http://registry.lan'], 'Invalid --insecure-registry "http://registry.lan"'],
  ])('rejects %j', (args, message) => {
    const result = runCli(args, privatePod(secured.host));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(message);
  });
});
