/**
 * Latency and throughput of `tandem webhook`: the runtime's webhook on 127.0.0.1 with a certificate
 * from `tandem webhook certs`, and autocannon sending AdmissionReview v1 requests for a
 * three-container pod over kept-alive HTTPS connections. It measures the latency at a fixed rate
 * and the rate that the webhook sustains when autocannon sends as fast as the webhook responds.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { delay, isMain, isQuick, markdownTable, percentile, runtimeTandem, type Result } from './common.js';

const TARGET_P99_MS = 5;
const FIXED_RATE = 500;

/** Concurrent connections, as the API server would open to a busy webhook. */
const CONNECTIONS = 10;

/** The name that `tandem webhook certs` puts in the serving certificate and that the client asks for by SNI. */
const SERVICE = 'tandem-webhook';
const NAMESPACE = 'tandem-system';
const SERVER_NAME = `${SERVICE}.${NAMESPACE}.svc`;

/** The parts of autocannon 8's options and result that this benchmark uses (the package ships no types). */
interface AutocannonOptions {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  connections: number;
  duration: number;
  servername: string;
  tlsOptions: { ca: Buffer };
}

interface AutocannonResult {
  /** Responses with a status code, by its first digit: `2xx`, `4xx`, … */
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Seconds. */
  duration: number;
}

interface AutocannonInstance extends PromiseLike<AutocannonResult> {
  on(event: 'response', listener: (client: unknown, statusCode: number, bytes: number, responseTimeMs: number) => void): void;
}

const autocannon = createRequire(import.meta.url)('autocannon') as (options: AutocannonOptions) => AutocannonInstance;

/** Returns an AdmissionReview v1 of a typical pod: one app and two sidecars marked as ECI marks them. */
export function admissionReview(): string {
  const sidecarEnv = [{ name: 'ECI_SIDECAR_CONTAINER', value: 'true' }];
  const resources = { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } };
  const pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'shop-7d9f8c6b5-', namespace: 'shop', labels: { app: 'shop', 'pod-template-hash': '7d9f8c6b5' } },
    spec: {
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      containers: [
        {
          name: 'shop',
          image: 'registry.example/shop:1.4.2',
          command: ['/shop'],
          args: ['--listen', ':8080'],
          ports: [{ name: 'http', containerPort: 8080 }],
          env: [{ name: 'LOG_FORMAT', value: 'json' }],
          resources,
          volumeMounts: [{ name: 'config', mountPath: '/etc/shop' }],
        },
        {
          name: 'envoy',
          image: 'registry.example/envoy:1.31',
          command: ['envoy'],
          args: ['-c', '/etc/envoy/envoy.yaml'],
          ports: [{ name: 'proxy', containerPort: 15001 }],
          env: [...sidecarEnv, { name: 'ECI_CONTAINER_LAUNCH_PRIORITY', value: '2' }],
          resources,
          readinessProbe: { httpGet: { path: '/ready', port: 15021 } },
        },
        {
          name: 'filebeat',
          image: 'registry.example/filebeat:8.15',
          command: ['filebeat'],
          args: ['-e'],
          env: sidecarEnv,
          resources,
        },
      ],
      volumes: [{ name: 'config', configMap: { name: 'shop' } }],
    },
  };
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '705ab4f5-6393-11e8-b7cc-42010a800002',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      namespace: 'shop',
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller' },
      object: pod,
      dryRun: false,
    },
  });
}

interface Webhook {
  child: ChildProcess;
  port: number;
}

/** Starts the runtime's `tandem webhook` on a free port of 127.0.0.1, without registry lookups, and waits until it listens. */
async function startWebhook(certDir: string): Promise<Webhook> {
  const child = spawn(
    runtimeTandem,
    ['webhook', '--host', '127.0.0.1', '--port', '0', '--tls-cert', path.join(certDir, 'tls.crt'), '--tls-key', path.join(certDir, 'tls.key'), '--no-registry'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tandem webhook did not listen within 10 s; stderr: ${stderr}`)), 10_000);
    child.on('exit', (code) => reject(new Error(`tandem webhook exited with code ${code} before listening; stderr: ${stderr}`)));
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const listening = stderr.split('\n').find((line) => line.includes('"event":"listening"'));
      if (listening !== undefined) {
        clearTimeout(timer);
        resolve((JSON.parse(listening) as { port: number }).port);
      }
    });
  });
  // One log line per admission follows; reading and dropping it keeps the pipe from filling up.
  child.stderr!.removeAllListeners('data');
  child.stderr!.resume();
  return { child, port };
}

/** Sends one review and checks that the webhook allows it with a JSON Patch, so the load below measures real work. */
async function checkOneReview(port: number, ca: Buffer, body: string): Promise<void> {
  const text = await new Promise<string>((resolve, reject) => {
    const request = https.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/mutate', servername: SERVER_NAME, ca, headers: { 'Content-Type': 'application/json' } },
      (response) => {
        let received = '';
        response.on('data', (chunk: Buffer) => (received += chunk.toString()));
        response.on('end', () => resolve(received));
      },
    );
    request.on('error', reject);
    request.end(body);
  });
  const review = JSON.parse(text) as { response?: { allowed?: boolean; patchType?: string } };
  if (review.response?.allowed !== true || review.response.patchType !== 'JSONPatch') {
    throw new Error(`tandem webhook did not return an allowed JSON Patch: ${text.slice(0, 2000)}`);
  }
}

interface LoadResult {
  result: AutocannonResult;
  /** Response times of the 2xx responses, in milliseconds, as autocannon timed them (sub-millisecond resolution). */
  latenciesMs: number[];
}

/**
 * Runs autocannon against /mutate, sending each request as soon as the response to the previous one
 * on its connection arrives. NOTE: autocannon's own rate limit (`overallRate`) is not used for the fixed
 * rate: each connection sends its share of a second back to back and then waits for the next second,
 * so the load arrives in bursts at the maximum rate rather than spread over the second.
 */
async function loadAtMaximumRate(port: number, ca: Buffer, body: string, durationSeconds: number): Promise<LoadResult> {
  const instance = autocannon({
    url: `https://127.0.0.1:${port}/mutate`,
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body,
    connections: CONNECTIONS,
    duration: durationSeconds,
    servername: SERVER_NAME,
    tlsOptions: { ca },
  });
  const latenciesMs: number[] = [];
  instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
    if (statusCode >= 200 && statusCode < 300) {
      latenciesMs.push(responseTimeMs);
    }
  });
  const result = await instance;
  if (result.errors > 0 || result.timeouts > 0 || result.non2xx > 0) {
    throw new Error(`autocannon got ${result.errors} errors, ${result.timeouts} timeouts and ${result.non2xx} non-2xx responses`);
  }
  return { result, latenciesMs };
}

interface PacedResult {
  /** Time from each request's start to the end of its response, in milliseconds. */
  latenciesMs: number[];
  /** How late each request started after its planned time, in milliseconds: the client's own timer delay. */
  startDelaysMs: number[];
  /** Requests completed per second over the whole run. */
  achievedRate: number;
}

/**
 * Sends requests at evenly spaced planned times (an open loop, as independent API server requests
 * arrive) over at most CONNECTIONS kept-alive connections, and times each one. Requests that find
 * every connection busy wait in the agent's queue, and that wait counts in their latency.
 */
async function loadAtFixedRate(agent: https.Agent, port: number, body: string, durationSeconds: number, rate: number): Promise<PacedResult> {
  const total = Math.round(durationSeconds * rate);
  const intervalMs = 1000 / rate;
  const latenciesMs: number[] = [];
  const startDelaysMs: number[] = [];
  const responses: Promise<void>[] = [];
  const send = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const startedAt = performance.now();
      const request = https.request({ host: '127.0.0.1', port, method: 'POST', path: '/mutate', agent, headers: { 'Content-Type': 'application/json' } }, (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode !== 200) {
            reject(new Error(`tandem webhook responded with HTTP ${response.statusCode}`));
            return;
          }
          latenciesMs.push(performance.now() - startedAt);
          resolve();
        });
      });
      request.setTimeout(10_000, () => request.destroy(new Error('request timed out after 10 s')));
      request.on('error', reject);
      request.end(body);
    });

  const begin = performance.now();
  let sent = 0;
  while (sent < total) {
    const now = performance.now();
    // Every request whose planned time has passed starts now, so a late timer never lowers the rate.
    while (sent < total && begin + sent * intervalMs <= now) {
      startDelaysMs.push(now - (begin + sent * intervalMs));
      responses.push(send());
      sent += 1;
    }
    await delay(Math.max(0, begin + sent * intervalMs - performance.now()));
  }
  await Promise.all(responses);
  return { latenciesMs, startDelaysMs, achievedRate: (total / (performance.now() - begin)) * 1000 };
}

export async function benchWebhook(quick: boolean): Promise<Result[]> {
  const fixedSeconds = quick ? 2 : 30;
  const maxSeconds = quick ? 2 : 15;
  const certDir = mkdtempSync(path.join(tmpdir(), 'tandem-bench-webhook-'));
  let webhook: Webhook | undefined;
  try {
    const certs = spawnSync(runtimeTandem, ['webhook', 'certs', '--service', SERVICE, '--namespace', NAMESPACE, '--out', certDir], { encoding: 'utf8' });
    if (certs.status !== 0) {
      throw new Error(`tandem webhook certs failed with code ${certs.status}: ${certs.stderr}`);
    }
    const ca = readFileSync(path.join(certDir, 'ca.crt'));
    const body = admissionReview();
    webhook = await startWebhook(certDir);
    await checkOneReview(webhook.port, ca, body);

    // A short warm-up lets V8 compile the request path, in the webhook and in this client, before anything is measured.
    // The measured run reuses the warm-up's connections, so no TLS handshake falls into it.
    const agent = new https.Agent({ keepAlive: true, maxSockets: CONNECTIONS, ca, servername: SERVER_NAME });
    let fixed: PacedResult;
    try {
      await loadAtFixedRate(agent, webhook.port, body, 1, FIXED_RATE);
      await delay(200);
      fixed = await loadAtFixedRate(agent, webhook.port, body, fixedSeconds, FIXED_RATE);
    } finally {
      agent.destroy();
    }
    await delay(200);
    const max = await loadAtMaximumRate(webhook.port, ca, body, maxSeconds);

    const p50 = percentile(fixed.latenciesMs, 50);
    const p99 = percentile(fixed.latenciesMs, 99);
    const count = fixed.latenciesMs.length;
    return [
      { benchmark: 'webhook', measurement: `latency at ${FIXED_RATE} req/s, p50 of ${count}`, value: p50, unit: 'ms', target: '' },
      { benchmark: 'webhook', measurement: `latency at ${FIXED_RATE} req/s, p99 of ${count}`, value: p99, unit: 'ms', target: `≤ ${TARGET_P99_MS} ms`, meets: p99 <= TARGET_P99_MS },
      { benchmark: 'webhook', measurement: `request start delay of the client at ${FIXED_RATE} req/s, p99`, value: percentile(fixed.startDelaysMs, 99), unit: 'ms', target: '' },
      { benchmark: 'webhook', measurement: `rate achieved at ${FIXED_RATE} req/s requested, ${fixedSeconds} s`, value: fixed.achievedRate, unit: 'req/s', target: '' },
      { benchmark: 'webhook', measurement: `maximum sustained rate, ${CONNECTIONS} connections, ${maxSeconds} s`, value: max.result['2xx'] / max.result.duration, unit: 'req/s', target: '' },
      { benchmark: 'webhook', measurement: 'latency at the maximum rate, p50', value: percentile(max.latenciesMs, 50), unit: 'ms', target: '' },
      { benchmark: 'webhook', measurement: 'latency at the maximum rate, p99', value: percentile(max.latenciesMs, 99), unit: 'ms', target: '' },
    ];
  } finally {
    if (webhook !== undefined && webhook.child.exitCode === null) {
      const exited = once(webhook.child, 'exit');
      webhook.child.kill('SIGTERM');
      await exited;
    }
    rmSync(certDir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) {
  console.log(markdownTable(await benchWebhook(isQuick())));
}
