import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeSharedDir, superviseArgs, tandem, writePod } from '../support/tandem.js';

/**
 * An HTTP server on loopback that returns 503 for /ready until `readyAfterMs`, then 200, the way
 * a proxy's health endpoint lags behind its admin port.
 */
async function startHealthServer(readyAfterMs: number): Promise<{ port: number; readyAt: number; close: () => void }> {
  const readyAt = Date.now() + readyAfterMs;
  const server = createServer((request, response) => {
    response.statusCode = Date.now() >= readyAt ? 200 : 503;
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, readyAt, close: () => server.close() };
}

async function runPair(readiness: string, shared: string): Promise<{ appStartedAt: number; appExit: number | undefined }> {
  await writePod(shared, [
    { name: 'proxy', role: 'sidecar', priority: 1, readiness },
    { name: 'app', role: 'app', priority: 0 },
  ]);
  const sidecar = tandem(superviseArgs(shared, 'proxy', 'sidecar', ['sleep', '1000']));
  const app = await tandem(superviseArgs(shared, 'app', 'app', ['sh', '-c', 'date +%s%3N > "$0/app-started"', shared]));
  await sidecar;
  return { appStartedAt: Number(readFileSync(path.join(shared, 'app-started'), 'utf8')), appExit: app.exitCode };
}

describe('sidecar readiness checks', () => {
  it('http waits for a 2xx answer', async () => {
    const server = await startHealthServer(1500);
    try {
      const { appStartedAt, appExit } = await runPair(`http://127.0.0.1:${server.port}/ready`, makeSharedDir());
      expect(appExit).toBe(0);
      expect(appStartedAt).toBeGreaterThanOrEqual(server.readyAt);
    } finally {
      server.close();
    }
  });

  it('exec waits for exit 0', async () => {
    const server = await startHealthServer(1500);
    try {
      const check = `exec:node -e fetch("http://127.0.0.1:${server.port}/ready").then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))`;
      const { appStartedAt, appExit } = await runPair(check, makeSharedDir());
      expect(appExit).toBe(0);
      expect(appStartedAt).toBeGreaterThanOrEqual(server.readyAt);
    } finally {
      server.close();
    }
  });

  it('file waits for the file', async () => {
    const shared = makeSharedDir();
    const marker = path.join(shared, 'ready');
    const readyAt = Date.now() + 1500;
    setTimeout(() => writeFileSync(marker, 'ok'), 1500);
    const { appStartedAt, appExit } = await runPair(`file:${marker}`, shared);
    expect(appExit).toBe(0);
    expect(appStartedAt).toBeGreaterThanOrEqual(readyAt);
  });

  it('tcp counts an open port as ready', async () => {
    const server = await startHealthServer(60_000);
    try {
      const startedAt = Date.now();
      const { appStartedAt, appExit } = await runPair(`tcp:${server.port}`, makeSharedDir());
      expect(appExit).toBe(0);
      expect(appStartedAt - startedAt).toBeLessThan(3000);
    } finally {
      server.close();
    }
  });

  it('invalid check is rejected at start', async () => {
    const result = await tandem(['supervise', '--readiness', 'tcp:99999', '--', 'true']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("'tcp:99999'");
    expect(result.stderr).toContain('tcp:PORT');
  });
});
