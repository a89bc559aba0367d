import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect } from 'node:tls';
import jsonPatch, { type Operation } from 'fast-json-patch';
import pino from 'pino';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AnnotationResolver, resolveImageConfig } from '../../agent/inject/image-config.js';
import { InjectError } from '../../agent/inject/errors.js';
import { parseManifests } from '../../agent/inject/io.js';
import type { KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { DEFAULT_MAX_REQUEST_BYTES, startWebhookServer, type WebhookServer } from '../../agent/webhook/server.js';
import { parsePodSpec } from '../../supervisor/protocol/pod.js';

// These tests run the built CLI (`npx tsc -p tsconfig.json` first) for the certificates and for
// `tandem inject`, and talk HTTPS to a webhook server in this process on 127.0.0.1.
const CLI = path.resolve('dist/agent/cli.js');
const EXAMPLES = path.resolve('examples/reference');
const SERVICE_HOST = 'tandem-webhook.tandem-system.svc';
const IMAGE = 'localhost/tandem:0.1.0';
// 2025-04-29T03:26:06Z, the time of the reference document's log line, which fixes Kruise's timestamps.
const EPOCH = '1745897166';

interface CertificateFiles {
  dir: string;
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  fingerprint: string;
  caBundle: string;
}

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

let directory: string;
let pairA: CertificateFiles;
let pairB: CertificateFiles;
let server: WebhookServer;
let serveDir: string;
let agent: https.Agent;
const logLines: Record<string, any>[] = [];

function cli(args: string[], input?: string) {
  return spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', env: { ...process.env, SOURCE_DATE_EPOCH: EPOCH }, timeout: 60_000 });
}

function makeCertificates(name: string): CertificateFiles {
  const dir = path.join(directory, name);
  const result = cli(['webhook', 'certs', '--service', 'tandem-webhook', '--namespace', 'tandem-system', '--out', dir]);
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  const cert = readFileSync(path.join(dir, 'tls.crt'));
  return {
    dir,
    ca: readFileSync(path.join(dir, 'ca.crt')),
    cert,
    key: readFileSync(path.join(dir, 'tls.key')),
    fingerprint: new X509Certificate(cert).fingerprint256,
    caBundle: result.stdout.trim(),
  };
}

function request(port: number, method: string, urlPath: string, body?: string | Buffer, headers: Record<string, string> = {}, requestAgent: https.Agent | false = agent): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const outgoing = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        servername: SERVICE_HOST,
        ca: [pairA.ca, pairB.ca],
        agent: requestAgent,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), ...headers },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: response.statusCode!, headers: response.headers, text, json });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

function post(body: unknown): Promise<HttpResult> {
  return request(server.port, 'POST', '/mutate', typeof body === 'string' ? body : JSON.stringify(body));
}

let uidCounter = 0;

function admissionReview(object: unknown, overrides: Record<string, unknown> = {}): Record<string, any> {
  uidCounter += 1;
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `0000-${uidCounter}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'default',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
      ...overrides,
    },
  };
}

function decodePatch(result: HttpResult): Operation[] {
  expect(result.json.response.patchType).toBe('JSONPatch');
  return JSON.parse(Buffer.from(result.json.response.patch as string, 'base64').toString('utf8')) as Operation[];
}

function applyReturnedPatch(object: KubeObject, result: HttpResult): KubeObject {
  return jsonPatch.applyPatch(structuredClone(object), decodePatch(result), true, false).newDocument;
}

// The reference echo server's pod template as the Pod its ReplicaSet would create, with the
// ENTRYPOINT of its image as an annotation so that no image store is needed.
function referencePod(options: { virtualNode?: boolean } = {}): KubeObject {
  const deployment = parse(readFileSync(path.join(EXAMPLES, 'echo-server.yaml'), 'utf8')) as KubeObject;
  const template = (deployment.spec as { template: PodTemplateSpec }).template;
  const labels = { ...template.metadata!.labels! };
  if (options.virtualNode) {
    labels['serverless.alibabacloud.com/virtual-node'] = 'true';
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'echo-server-7d9f8b6c5-x2x7q',
      namespace: 'default',
      labels,
      annotations: { 'entrypoint.tandem.dev/echo-server': '["/http-echo"]', 'entrypoint.tandem.dev/filebeat': '[]' },
    },
    spec: template.spec,
  };
}

// Runs `tandem inject` on one Pod as a real process and returns the Pod it writes. --no-registry
// keeps it off the network, like the webhook, which reads image configs from annotations only.
function injectWithCli(object: KubeObject, extraArgs: string[] = []): KubeObject {
  const file = path.join(directory, `pod-${uidCounter}-${Math.random().toString(16).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(object));
  const result = cli(['inject', '--no-registry', ...extraArgs, file]);
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  const [document] = parseManifests(result.stdout, 'tandem inject output') as KubeObject[];
  return document!;
}

function podSpecOf(object: KubeObject) {
  const init = (object.spec as PodTemplateSpec['spec']).initContainers![0]!;
  expect(init.name).toBe('tandem-init');
  return parsePodSpec(init.command![4]!, 'tandem-init');
}

function peerFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: SERVICE_HOST, ca: [pairA.ca, pairB.ca] }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.on('error', reject);
  });
}

async function waitForFingerprint(port: number, expected: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let seen = await peerFingerprint(port);
  while (seen !== expected && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    seen = await peerFingerprint(port);
  }
  return seen;
}

function captureLogger() {
  return pino({ level: 'debug', base: {} }, { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, any>) });
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
}

beforeAll(async () => {
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-webhook-'));
  pairA = makeCertificates('pair-a');
  pairB = makeCertificates('pair-b');
  serveDir = path.join(directory, 'serve');
  mkdirSync(serveDir);
  copyFileSync(path.join(pairA.dir, 'tls.crt'), path.join(serveDir, 'tls.crt'));
  copyFileSync(path.join(pairA.dir, 'tls.key'), path.join(serveDir, 'tls.key'));

  agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  server = await startWebhookServer({
    host: '127.0.0.1',
    port: 0,
    certFile: path.join(serveDir, 'tls.crt'),
    keyFile: path.join(serveDir, 'tls.key'),
    maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
    mutation: { image: IMAGE, keepStdlog: false, resolvers: [new AnnotationResolver()] },
    logger: captureLogger(),
  });
});

afterAll(async () => {
  agent?.destroy();
  await server?.close(5000);
  rmSync(directory, { recursive: true, force: true });
});

describe('webhook certs', () => {
  it('prints the CA as caBundle', () => {
    expect(Buffer.from(pairA.caBundle, 'base64')).toEqual(pairA.ca);
  });

  it('serves a certificate the CA verifies', async () => {
    expect(await peerFingerprint(server.port)).toBe(pairA.fingerprint);
  });
});

describe('webhook mutation', () => {
  it('matches tandem inject for the reference pod', async () => {
    const pod = referencePod();

    const result = await post(admissionReview(pod));
    const patched = applyReturnedPatch(pod, result);

    expect(result.status).toBe(200);
    expect(result.json.apiVersion).toBe('admission.k8s.io/v1');
    expect(result.json.kind).toBe('AdmissionReview');
    expect(result.json.response.uid).toBe(`0000-${uidCounter}`);
    expect(result.json.response.allowed).toBe(true);
    expect(result.json.response.warnings).toBeUndefined();
    expect(patched).toEqual(injectWithCli(pod));
  });

  it('matches tandem inject after Kruise injection', async () => {
    // `tandem inject --sidecarset` with the opt-out annotation applies the SidecarSet as Kruise's
    // webhook would and stops there. That is the pod the tandem webhook receives in a cluster.
    const original = referencePod({ virtualNode: true });
    const optedOut = structuredClone(original);
    (optedOut.metadata as { annotations: Record<string, string> }).annotations['tandem.dev/inject'] = 'disabled';
    const afterKruise = injectWithCli(optedOut, ['--sidecarset', path.join(EXAMPLES, 'sidecarset.yaml')]);
    delete (afterKruise.metadata as { annotations: Record<string, string> }).annotations['tandem.dev/inject'];
    const filebeat = (afterKruise.spec as PodTemplateSpec['spec']).containers.find((container) => container.name === 'filebeat');
    expect(filebeat?.env).toEqual(expect.arrayContaining([{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }, { name: 'IS_INJECTED', value: 'true' }]));

    const result = await post(admissionReview(afterKruise));
    const patched = applyReturnedPatch(afterKruise, result);

    expect(result.json.response.allowed).toBe(true);
    expect(podSpecOf(patched).containers.map(({ name, role }) => ({ name, role }))).toEqual([
      { name: 'filebeat', role: 'sidecar' },
      { name: 'echo-server', role: 'app' },
    ]);
    expect(result.json.response.warnings).toEqual([expect.stringContaining('stdlog CSI volume stdlog replaced')]);
    expect(patched).toEqual(injectWithCli(original, ['--sidecarset', path.join(EXAMPLES, 'sidecarset.yaml')]));
  });

  it('wraps a sidecar added on reinvocation', async () => {
    const original = referencePod({ virtualNode: true });
    const injected = applyReturnedPatch(original, await post(admissionReview(original)));
    const afterKruise = injectWithCli(
      (() => {
        const optedOut = structuredClone(original);
        (optedOut.metadata as { annotations: Record<string, string> }).annotations['tandem.dev/inject'] = 'disabled';
        return optedOut;
      })(),
      ['--sidecarset', path.join(EXAMPLES, 'sidecarset.yaml')],
    );
    // Kruise's webhook, called after tandem's, puts its container before the app containers (its
    // default podInjectPolicy BeforeAppContainer) and appends its volumes and annotations.
    const reinvoked = structuredClone(injected);
    const spec = reinvoked.spec as PodTemplateSpec['spec'];
    const kruiseSpec = afterKruise.spec as PodTemplateSpec['spec'];
    spec.containers.unshift(...kruiseSpec.containers.filter((container) => container.name === 'filebeat'));
    spec.volumes!.push(...kruiseSpec.volumes!);
    const annotations = { ...(afterKruise.metadata as { annotations: Record<string, string> }).annotations };
    delete annotations['tandem.dev/inject'];
    (reinvoked.metadata as { annotations: Record<string, string> }).annotations = annotations;

    const result = await post(admissionReview(reinvoked));
    const patched = applyReturnedPatch(reinvoked, result);

    expect(result.json.response.allowed).toBe(true);
    expect(patched).toEqual(injectWithCli(original, ['--sidecarset', path.join(EXAMPLES, 'sidecarset.yaml')]));
  });

  it('warns about init containers before sidecars', async () => {
    const pod = referencePod();
    const spec = pod.spec as PodTemplateSpec['spec'];
    spec.initContainers = [{ name: 'fetch-config', image: 'busybox', command: ['wget', 'http://config/'] }];
    spec.containers.push({ name: 'proxy', image: 'busybox', command: ['/proxy'], env: [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }] });

    const result = await post(admissionReview(pod));

    expect(result.json.response.allowed).toBe(true);
    expect(result.json.response.warnings).toEqual([expect.stringContaining('init containers fetch-config run before sidecars proxy start, so they cannot use them.')]);
  });

  it('leaves an opted-out pod unchanged', async () => {
    const pod = referencePod();
    (pod.metadata as { annotations: Record<string, string> }).annotations['tandem.dev/inject'] = 'disabled';

    const result = await post(admissionReview(pod));

    expect(result.json.response).toEqual({ uid: `0000-${uidCounter}`, allowed: true });
  });

  it('leaves an injected pod unchanged', async () => {
    const injected = injectWithCli(referencePod());

    const result = await post(admissionReview(injected));

    expect(result.json.response).toEqual({ uid: `0000-${uidCounter}`, allowed: true });
  });

  // An image that no local store has, so that `tandem inject` cannot find it with podman either.
  function podWithoutEntrypoint(): KubeObject {
    const pod = referencePod();
    delete (pod.metadata as { annotations?: Record<string, string> }).annotations;
    (pod.spec as PodTemplateSpec['spec']).containers[0]!.image = 'example.invalid/echo:missing';
    return pod;
  }

  it('rejects a pod whose image config is unknown', async () => {
    const pod = podWithoutEntrypoint();
    const expected = await resolveImageConfig(
      { containerName: 'echo-server', image: 'example.invalid/echo:missing', need: 'entrypoint', annotations: {}, owner: 'Pod/echo-server-7d9f8b6c5-x2x7q in namespace default' },
      [new AnnotationResolver()],
    ).then(
      () => 'resolved',
      (error: InjectError) => error.message,
    );

    const result = await post(admissionReview(pod));

    expect(result.status).toBe(200);
    expect(result.json.response.allowed).toBe(false);
    expect(result.json.response.patch).toBeUndefined();
    expect(result.json.response.status.code).toBe(400);
    expect(result.json.response.status.message).toBe(expected);
    expect(result.json.response.status.message).toContain("Add the pod template annotation entrypoint.tandem.dev/echo-server: '[\"/path/to/entrypoint\"]'");
  });

  it('rejects the same image config as the CLI', async () => {
    const pod = podWithoutEntrypoint();
    const file = path.join(directory, 'no-entrypoint.json');
    writeFileSync(file, JSON.stringify(pod));

    const result = await post(admissionReview(pod));
    const fromCli = cli(['inject', '--no-registry', file]);
    const fix = / tandem must know the exact command line.*$/.exec(result.json.response.status.message as string)?.[0];

    expect(fromCli.status).toBe(1);
    expect(fix).toBeDefined();
    expect(fromCli.stderr).toContain(fix);
    expect(fromCli.stderr).toContain('Cannot find the ENTRYPOINT of image example.invalid/echo:missing for container echo-server in Pod/echo-server-7d9f8b6c5-x2x7q in namespace default');
  });

  it('names the controller of a generated pod', async () => {
    const pod = podWithoutEntrypoint();
    const metadata = pod.metadata as Record<string, unknown>;
    delete metadata.name;
    metadata.generateName = 'echo-server-7d9f8b6c5-';
    metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'echo-server-7d9f8b6c5', uid: 'x', controller: true }];

    const result = await post(admissionReview(pod));

    expect(result.json.response.status.message).toContain(
      'for container echo-server in Pod/echo-server-7d9f8b6c5-<generated> in namespace default (created by ReplicaSet/echo-server-7d9f8b6c5)',
    );
  });

  it('allows other kinds unchanged', async () => {
    const deployment = parse(readFileSync(path.join(EXAMPLES, 'echo-server.yaml'), 'utf8')) as KubeObject;

    const result = await post(admissionReview(deployment, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } }));

    expect(result.json.response).toEqual({ uid: `0000-${uidCounter}`, allowed: true });
  });

  it('allows pod updates unchanged', async () => {
    const result = await post(admissionReview(referencePod(), { operation: 'UPDATE' }));

    expect(result.json.response).toEqual({ uid: `0000-${uidCounter}`, allowed: true });
  });

  it('logs the decision without the pod', () => {
    const entries = logLines.filter((line) => line.event === 'admission' && line.decision === 'injected');

    expect(entries.length).toBeGreaterThan(0);
    expect(entries[0]).toMatchObject({ namespace: 'default', pod: 'echo-server-7d9f8b6c5-x2x7q', operation: 'CREATE' });
    expect(typeof entries[0]!.uid).toBe('string');
    expect(typeof entries[0]!.durationMs).toBe('number');
    expect(JSON.stringify(logLines)).not.toContain('-listen=:8080');
  });
});

describe('webhook invalid requests', () => {
  it('answers malformed JSON with 400', async () => {
    const result = await post('{"apiVersion": "admission.k8s.io/v1", "kind": ');

    expect(result.status).toBe(400);
    expect(result.json).toMatchObject({ kind: 'Status', status: 'Failure', code: 400 });
    expect(result.json.message).toContain('the request body is not JSON');
  });

  it('answers a wrong kind with its uid', async () => {
    const review = admissionReview(referencePod());
    review.kind = 'AdmissionRequest';

    const result = await post(review);

    expect(result.status).toBe(200);
    expect(result.json.response.uid).toBe(review.request.uid);
    expect(result.json.response.allowed).toBe(false);
    expect(result.json.response.status.message).toContain('kind "AdmissionRequest", expected admission.k8s.io/v1 and AdmissionReview');
  });

  it('answers v1beta1 without a uid with 400', async () => {
    const review = admissionReview(referencePod());
    review.apiVersion = 'admission.k8s.io/v1beta1';
    delete review.request.uid;

    const result = await post(review);

    expect(result.status).toBe(400);
    expect(result.json.message).toContain('apiVersion "admission.k8s.io/v1beta1"');
    expect(result.json.message).toContain('admissionReviewVersions: [v1]');
  });

  it('answers a missing uid with 400', async () => {
    const review = admissionReview(referencePod());
    delete review.request.uid;

    const result = await post(review);

    expect(result.status).toBe(400);
    expect(result.json.message).toContain('request.uid is missing');
  });

  it('rejects a missing object', async () => {
    const review = admissionReview(undefined);

    const result = await post(review);

    expect(result.status).toBe(200);
    expect(result.json.response.allowed).toBe(false);
    expect(result.json.response.status.message).toContain('request.object of the AdmissionReview is not a Kubernetes object');
  });

  it('rejects a pod without containers', async () => {
    const pod = referencePod();
    delete (pod.spec as Record<string, unknown>).containers;

    const result = await post(admissionReview(pod));

    expect(result.json.response.allowed).toBe(false);
    expect(result.json.response.status.message).toContain('spec.containers is missing');
  });

  it('answers an oversized body with 413', async () => {
    const body = Buffer.alloc(4 * 1024 * 1024, ' ');

    const result = await request(server.port, 'POST', '/mutate', body, {}, false);
    const next = await post(admissionReview(referencePod()));

    expect(result.status).toBe(413);
    expect(result.headers.connection).toBe('close');
    expect(result.json.message).toContain(`larger than ${DEFAULT_MAX_REQUEST_BYTES} bytes`);
    expect(next.status).toBe(200);
    expect(next.json.response.allowed).toBe(true);
  });

  it('answers an oversized chunked body with 413', async () => {
    const result = await new Promise<HttpResult>((resolve, reject) => {
      const outgoing = https.request(
        { host: '127.0.0.1', port: server.port, method: 'POST', path: '/mutate', servername: SERVICE_HOST, ca: pairA.ca, agent: false, headers: { 'Content-Type': 'application/json' } },
        (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => (text += chunk.toString()));
          response.on('end', () => resolve({ status: response.statusCode!, headers: response.headers, text, json: JSON.parse(text) }));
        },
      );
      outgoing.on('error', reject);
      for (let index = 0; index < 64; index += 1) {
        outgoing.write(Buffer.alloc(64 * 1024, ' '));
      }
      outgoing.end();
    });
    const next = await post(admissionReview(referencePod()));

    expect(result.status).toBe(413);
    expect(result.json.message).toContain('Content-Length not set');
    expect(next.json.response.allowed).toBe(true);
  });

  it('survives a client that disconnects', async () => {
    const body = JSON.stringify(admissionReview(referencePod()));
    const outgoing = https.request({
      host: '127.0.0.1',
      port: server.port,
      method: 'POST',
      path: '/mutate',
      servername: SERVICE_HOST,
      ca: pairA.ca,
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': String(body.length) },
    });
    outgoing.on('error', () => undefined);
    outgoing.write(body.slice(0, 100));
    await new Promise((resolve) => setTimeout(resolve, 200));
    outgoing.destroy();
    await new Promise((resolve) => setTimeout(resolve, 200));

    const next = await post(admissionReview(referencePod()));

    expect(logLines.some((line) => line.event === 'admission-aborted')).toBe(true);
    expect(logLines.some((line) => line.event === 'internal-error')).toBe(false);
    expect(next.json.response.allowed).toBe(true);
  });

  it('answers other methods and paths', async () => {
    const get = await request(server.port, 'GET', '/mutate');
    const unknown = await request(server.port, 'GET', '/validate');
    const form = await request(server.port, 'POST', '/mutate', 'a=b', { 'Content-Type': 'application/x-www-form-urlencoded' });

    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect(unknown.status).toBe(404);
    expect(form.status).toBe(415);
  });
});

describe('webhook probes', () => {
  it('reports health and readiness', async () => {
    const health = await request(server.port, 'GET', '/healthz');
    const ready = await request(server.port, 'GET', '/readyz');

    expect(health.status).toBe(200);
    expect(ready.status).toBe(200);
  });
});

describe('webhook latency', () => {
  it('measures 200 sequential reviews', async () => {
    const review = admissionReview(referencePod());
    const body = JSON.stringify(review);
    const measure = async (requestAgent: https.Agent | false): Promise<number[]> => {
      const durations: number[] = [];
      for (let index = 0; index < 200; index += 1) {
        const started = performance.now();
        const result = await request(server.port, 'POST', '/mutate', body, {}, requestAgent);
        durations.push(performance.now() - started);
        expect(result.json.response.allowed).toBe(true);
      }
      return durations.sort((a, b) => a - b);
    };

    const kept = await measure(agent);
    const fresh = await measure(false);

    const format = (sorted: number[]) => `p50 ${percentile(sorted, 0.5).toFixed(2)} ms, p99 ${percentile(sorted, 0.99).toFixed(2)} ms`;
    console.log(`AdmissionReview latency of the reference pod over loopback, 200 sequential requests: kept-alive connection ${format(kept)}; new TLS connection each ${format(fresh)}`);
    expect(percentile(kept, 0.5)).toBeLessThan(1000);
  });
});

describe('webhook TLS handshake', () => {
  it('logs a client that rejects the certificate', async () => {
    const firstLine = logLines.length;
    const other = mkdtempSync(path.join(tmpdir(), 'tandem-webhook-other-'));
    const result = spawnSync(process.execPath, [CLI, 'webhook', 'certs', '--service', 'other', '--namespace', 'other', '--out', other], { encoding: 'utf8' });
    expect(result.status).toBe(0);

    const failed = await new Promise<string>((resolve) => {
      const socket = connect({ host: '127.0.0.1', port: server.port, servername: SERVICE_HOST, ca: readFileSync(path.join(other, 'ca.crt')) }, () => resolve('connected'));
      socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    rmSync(other, { recursive: true, force: true });

    expect(failed).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(logLines.slice(firstLine).filter((line) => line.event === 'tls-handshake-failed')).toHaveLength(1);
  });
});

describe('webhook TLS reload', () => {
  it('serves a new pair written in place', async () => {
    expect(await peerFingerprint(server.port)).toBe(pairA.fingerprint);

    writeFileSync(path.join(serveDir, 'tls.crt'), pairB.cert);
    writeFileSync(path.join(serveDir, 'tls.key'), pairB.key);

    expect(await waitForFingerprint(server.port, pairB.fingerprint)).toBe(pairB.fingerprint);
    expect(logLines.some((line) => line.event === 'tls-reloaded' && line.fingerprint === pairB.fingerprint)).toBe(true);
  });

  it('keeps the pair when the new one is invalid', async () => {
    const current = server.keyPair.fingerprint;
    const other = current === pairA.fingerprint ? pairB : pairA;
    const firstLine = logLines.length;

    // A certificate with the key of another pair, then a file that is no certificate at all.
    writeFileSync(path.join(serveDir, 'tls.crt'), other.cert);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterMismatch = await peerFingerprint(server.port);
    writeFileSync(path.join(serveDir, 'tls.crt'), 'not a certificate\n');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const afterGarbage = await peerFingerprint(server.port);

    expect(afterMismatch).toBe(current);
    expect(afterGarbage).toBe(current);
    const failures = logLines.slice(firstLine).filter((line) => line.event === 'tls-reload-failed');
    expect(failures.map((line) => line.err)).toEqual([expect.stringContaining('Invalid TLS key'), expect.stringContaining('Invalid TLS certificate')]);
    expect((await post(admissionReview(referencePod()))).json.response.allowed).toBe(true);

    writeFileSync(path.join(serveDir, 'tls.crt'), current === pairA.fingerprint ? pairA.cert : pairB.cert);
  });

  it('follows a Secret volume update', async () => {
    // The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..<timestamp>, and an update
    // writes a new timestamped directory and renames a new ..data link over the old one.
    const secretDir = path.join(directory, 'secret');
    mkdirSync(path.join(secretDir, '..2025_01_01'), { recursive: true });
    for (const name of ['tls.crt', 'tls.key']) {
      copyFileSync(path.join(pairA.dir, name), path.join(secretDir, '..2025_01_01', name));
      symlinkSync(path.join('..data', name), path.join(secretDir, name));
    }
    symlinkSync('..2025_01_01', path.join(secretDir, '..data'));
    const secretServer = await startWebhookServer({
      host: '127.0.0.1',
      port: 0,
      certFile: path.join(secretDir, 'tls.crt'),
      keyFile: path.join(secretDir, 'tls.key'),
      maxRequestBytes: DEFAULT_MAX_REQUEST_BYTES,
      mutation: { image: IMAGE, keepStdlog: false, resolvers: [new AnnotationResolver()] },
      logger: captureLogger(),
    });

    try {
      expect(await peerFingerprint(secretServer.port)).toBe(pairA.fingerprint);

      mkdirSync(path.join(secretDir, '..2025_02_01'));
      for (const name of ['tls.crt', 'tls.key']) {
        copyFileSync(path.join(pairB.dir, name), path.join(secretDir, '..2025_02_01', name));
      }
      symlinkSync('..2025_02_01', path.join(secretDir, '..data_tmp'));
      renameSync(path.join(secretDir, '..data_tmp'), path.join(secretDir, '..data'));
      rmSync(path.join(secretDir, '..2025_01_01'), { recursive: true });

      expect(await waitForFingerprint(secretServer.port, pairB.fingerprint)).toBe(pairB.fingerprint);
    } finally {
      await secretServer.close(5000);
    }
  });
});
