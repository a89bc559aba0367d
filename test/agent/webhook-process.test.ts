import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// These tests run `tandem webhook` from the built CLI (`npx tsc -p tsconfig.json` first) as a real
// process on 127.0.0.1 and stop it with real signals.
const CLI = path.resolve('dist/agent/cli.js');
const SERVICE_HOST = 'tandem-webhook.tandem-system.svc';

let directory: string;
let ca: Buffer;

interface Webhook {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<number | null>;
}

interface HttpResult {
  status: number;
  json: any;
}

function startWebhook(extraArgs: string[] = []): Promise<Webhook> {
  const child = spawn(
    process.execPath,
    [CLI, 'webhook', '--host', '127.0.0.1', '--port', '0', '--tls-cert', path.join(directory, 'tls.crt'), '--tls-key', path.join(directory, 'tls.key'), ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const listening = stderr.split('\n').find((line) => line.includes('"event":"listening"'));
      if (listening !== undefined) {
        resolve({ child, port: (JSON.parse(listening) as { port: number }).port, stderr: () => stderr, exited });
      }
    });
    void exited.then((code) => reject(new Error(`tandem webhook exited with ${code} before listening: ${stderr}`)));
  });
}

function events(stderr: string): Record<string, any>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);
}

function send(port: number, method: string, urlPath: string, body?: string): { request: ReturnType<typeof https.request>; result: Promise<HttpResult> } {
  let outgoing!: ReturnType<typeof https.request>;
  const result = new Promise<HttpResult>((resolve, reject) => {
    outgoing = https.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        servername: SERVICE_HOST,
        ca,
        agent: false,
        headers: body === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) },
      },
      (response) => {
        let text = '';
        response.on('data', (chunk: Buffer) => (text += chunk.toString()));
        response.on('end', () => resolve({ status: response.statusCode!, json: text.startsWith('{') ? JSON.parse(text) : text }));
      },
    );
    outgoing.on('error', reject);
  });
  return { request: outgoing, result };
}

function get(port: number, urlPath: string): Promise<HttpResult> {
  const { request, result } = send(port, 'GET', urlPath);
  request.end();
  return result;
}

function review(uid: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      namespace: 'default',
      operation: 'CREATE',
      object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'worker' }, spec: { restartPolicy: 'Never', containers: [{ name: 'worker', image: 'busybox', command: ['true'] }] } },
    },
  });
}

beforeAll(() => {
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-webhook-process-'));
  const result = spawnSync(process.execPath, [CLI, 'webhook', 'certs', '--service', 'tandem-webhook', '--namespace', 'tandem-system', '--out', directory], { encoding: 'utf8' });
  expect(result.status).toBe(0);
  ca = readFileSync(path.join(directory, 'ca.crt'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('tandem webhook process', () => {
  it('serves the probes', async () => {
    const webhook = await startWebhook();
    try {
      const health = await get(webhook.port, '/healthz');
      const ready = await get(webhook.port, '/readyz');

      expect(health.status).toBe(200);
      expect(ready.status).toBe(200);
    } finally {
      webhook.child.kill('SIGTERM');
      await webhook.exited;
    }
  });

  it('finishes a request in progress on SIGTERM', async () => {
    const webhook = await startWebhook();
    const body = review('in-flight');
    const { request, result } = send(webhook.port, 'POST', '/mutate', body);
    request.write(body.slice(0, 40));
    await new Promise((resolve) => setTimeout(resolve, 200));

    webhook.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const refused = await get(webhook.port, '/healthz').then(
      () => 'accepted',
      (error: NodeJS.ErrnoException) => error.code,
    );
    request.end(body.slice(40));
    const response = await result;
    const code = await webhook.exited;

    expect(refused).toBe('ECONNREFUSED');
    expect(response.status).toBe(200);
    expect(response.json.response).toMatchObject({ uid: 'in-flight', allowed: true, patchType: 'JSONPatch' });
    expect(code).toBe(0);
    expect(events(webhook.stderr()).map((event) => event.event)).toEqual(['listening', 'stopping', 'admission', 'stopped']);
  });

  it('keeps serving during the shutdown delay', async () => {
    const webhook = await startWebhook(['--shutdown-delay', '1s']);

    webhook.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const ready = await get(webhook.port, '/readyz');
    const health = await get(webhook.port, '/healthz');
    const { request, result } = send(webhook.port, 'POST', '/mutate', review('during-delay'));
    request.end(review('during-delay'));
    const response = await result;
    const code = await webhook.exited;

    expect(ready.status).toBe(503);
    expect(health.status).toBe(200);
    expect(response.json.response).toMatchObject({ uid: 'during-delay', allowed: true });
    expect(code).toBe(0);
  });

  it('fails to start without the key', async () => {
    const child = spawnSync(process.execPath, [CLI, 'webhook', '--host', '127.0.0.1', '--port', '0', '--tls-cert', path.join(directory, 'tls.crt'), '--tls-key', path.join(directory, 'missing.key')], {
      encoding: 'utf8',
      timeout: 30_000,
    });

    expect(child.status).toBe(1);
    const [fatal] = events(child.stderr);
    expect(fatal).toMatchObject({ level: 'fatal', event: 'start-failed' });
    expect(fatal!.err).toContain(`Cannot read the TLS key ${path.join(directory, 'missing.key')}`);
    expect(fatal!.err).toContain('set --tls-key');
  });

  it('rejects an invalid port', () => {
    const child = spawnSync(process.execPath, [CLI, 'webhook', '--port', '70000'], { encoding: 'utf8', timeout: 30_000 });

    expect(child.status).toBe(2);
    expect(child.stderr).toContain("option '--port <port>' argument '70000' is invalid. Expected a TCP port from 0 to 65535");
  });
});

describe('webhook registry options', () => {
  it('invalid registry timeout exits 2', () => {
    const child = spawnSync(process.execPath, [CLI, 'webhook', '--registry-timeout', '0'], { encoding: 'utf8', timeout: 30_000 });
    expect(child.status).toBe(2);
    expect(child.stderr).toContain('Invalid --registry-timeout "0"');
  });
});
