import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { prepare, runDeployment, runJob, type ReferenceOptions } from '../../examples/reference.js';
import type { Podman } from '../../examples/podman.js';
import { repoRoot } from '../support/tandem.js';

const CRI_LISTENING_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z stderr F \d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2} Server is listening on :8080$/m;

describe('reference example in a podman pod', () => {
  const options: ReferenceOptions = { repoRoot, workDir: mkdtempSync(path.join(tmpdir(), 'tandem-e2e-')), print: () => undefined, podPrefix: 'e2e-' };
  let podman: Podman;

  beforeAll(async () => {
    podman = await prepare(options);
  }, 600_000);

  it('deployment runs 2/2 with config and logs', async () => {
    const report = await runDeployment(options, podman);
    const configMap = parse(readFileSync(path.join(repoRoot, 'examples', 'reference', 'filebeat-config.yaml'), 'utf8'));

    expect(report.containers.map((container) => `${container.name}=${container.state}`).sort()).toEqual(['echo-server=running', 'filebeat=running']);
    expect(report.filebeatConfig).toBe(configMap.data['filebeat.yml']);
    expect(report.echoServerLog).toMatch(CRI_LISTENING_LINE);
    expect(report.httpResponse).toContain('hello world');
    expect(report.status).toMatch(/filebeat\s+sidecar\s+1\s+ready\s+true/);
    expect(report.status).toMatch(/echo-server\s+app\s+0\s+running/);
  }, 180_000);

  it.each([0, 3])('Job with worker exit %i completes', async (exitCode) => {
    const report = await runJob(options, podman, exitCode);
    const worker = report.containers.find((container) => container.name === 'worker');
    const sidecar = report.containers.find((container) => container.name === 'filebeat');

    expect(worker?.exitCode).toBe(exitCode);
    expect(sidecar?.exitCode).toBe(0);
    expect(report.runningStatus).toMatch(/filebeat\s+sidecar\s+1\s+ready\s+true/);
    expect(report.sidecarStopMs).toBeGreaterThanOrEqual(0);
    expect(report.sidecarStopMs).toBeLessThan(3000);
    console.log(`Job exit ${exitCode}: filebeat stopped ${report.sidecarStopMs} ms after the worker`);
  }, 180_000);
});
