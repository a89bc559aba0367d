import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { podFromObject } from '../../examples/local-pod.js';
import { poll, Podman, type PodContainerState } from '../../examples/podman.js';
import { buildImages, DISTROLESS_IMAGE, MUSL_IMAGE } from '../../images/build.js';
import { cliPath, repoRoot } from '../support/tandem.js';

/**
 * Pods that Kubernetes would run, injected by the real `tandem inject` and played by podman 4.3:
 * images without a shell or without glibc, non-root users, pod deletion, an OOM kill, and launch
 * and stop order across many sidecars. docs/podman.md lists what podman does not reproduce.
 */

const TANDEM_IMAGE = 'localhost/tandem:dev';
const POD_PREFIX = 'e2e6-';

/** One row of `tandem status --output json`, with the fields these tests read. */
interface StatusRow {
  name: string;
  role: 'app' | 'sidecar';
  priority: number;
  phase: string;
  exitCode?: number;
  rawExitCode?: number;
  times: Partial<Record<'waiting' | 'running' | 'ready' | 'stopping' | 'exited', string>>;
}

describe('pods in podman', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'tandem-e2e-pods-'));
  const podman = new Podman(path.join(workDir, 'podman'));
  const startedPods: string[] = [];

  beforeAll(async () => {
    await buildImages({ repoRoot, containersConf: podman.containersConf, testImages: true });
  }, 600_000);

  afterAll(async () => {
    for (const podName of startedPods) {
      await podman.removePod(podName);
    }
  }, 120_000);

  /** Injects tandem into a manifest with the real CLI and plays the resulting pod as `podName`. */
  async function startPod(podName: string, manifest: string): Promise<void> {
    const result = await execa('node', [cliPath, 'inject', '--image', TANDEM_IMAGE, '-'], { input: manifest, reject: false });
    if (result.exitCode !== 0) {
      throw new Error(`tandem inject failed with code ${result.exitCode}: ${result.stderr}`);
    }
    // podFromObject names the emptyDir volumes after the pod, so no record of another pod or an earlier run is read.
    const pod = podFromObject(parse(result.stdout), podName);
    startedPods.push(podName);
    await podman.play(podName, stringify(pod));
  }

  async function waitForExit(podName: string, containerCount: number, timeoutMs = 60_000): Promise<Map<string, PodContainerState>> {
    const states = await poll(`all ${containerCount} containers of ${podName} to exit`, timeoutMs, async () => {
      const current = await podman.containers(podName);
      return current.length === containerCount && current.every((state) => state.state === 'exited') ? current : undefined;
    });
    return new Map(states.map((state) => [state.name, state]));
  }

  /** Reads the pod's records with a throwaway container, because the sidecar's volumes outlive it. */
  async function readStatus(podName: string, container: string): Promise<Map<string, StatusRow>> {
    const output = await podman.run(['run', '--rm', '--network', 'none', '--volumes-from', `${podName}-${container}`, TANDEM_IMAGE, 'status', '--output', 'json']);
    const rows = (JSON.parse(output) as { rows: StatusRow[] }).rows;
    return new Map(rows.map((row) => [row.name, row]));
  }

  it('distroless sidecar ends with Job', async () => {
    const podName = `${POD_PREFIX}distroless-job`;
    await startPod(
      podName,
      `
apiVersion: batch/v1
kind: Job
metadata:
  name: distroless-job
spec:
  template:
    metadata:
      annotations:
        entrypoint.tandem.dev/agent: '["/idle"]'
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: ${DISTROLESS_IMAGE}
          env:
            - { name: ECI_SIDECAR_CONTAINER, value: "true" }
        - name: worker
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "echo working; sleep 0.5; exit 3"]
`,
    );

    const states = await waitForExit(podName, 2);
    expect(states.get('worker')?.exitCode).toBe(3);
    expect(states.get('agent')?.exitCode).toBe(0);

    // The static program, not a shell, received the stop signal and exited by itself.
    const agentLog = await podman.logs(`${podName}-agent`);
    expect(agentLog).toContain('idle: received SIGTERM, exiting 0');

    const noShell = await execa('podman', ['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', DISTROLESS_IMAGE, '-c', 'true'], {
      env: { CONTAINERS_CONF: podman.containersConf },
      reject: false,
    });
    expect(noShell.exitCode).not.toBe(0);
    expect(noShell.stderr).toMatch(/executable file not found|no such file or directory/);
  }, 120_000);

  it('musl-only app runs the runtime', async () => {
    const podName = `${POD_PREFIX}musl-job`;
    await startPod(
      podName,
      `
apiVersion: batch/v1
kind: Job
metadata:
  name: musl-job
spec:
  template:
    metadata:
      annotations:
        entrypoint.tandem.dev/agent: '["/idle"]'
        entrypoint.tandem.dev/worker: '["/bin/idle"]'
    spec:
      restartPolicy: Never
      containers:
        - name: agent
          image: ${DISTROLESS_IMAGE}
          env:
            - { name: ECI_SIDECAR_CONTAINER, value: "true" }
        - name: worker
          image: ${MUSL_IMAGE}
          args: ["--exit", "0", "--after", "300"]
`,
    );

    const states = await waitForExit(podName, 2);
    expect(states.get('worker')?.exitCode).toBe(0);
    expect(states.get('agent')?.exitCode).toBe(0);

    // tandem's JSON log lines show that its Node.js, with the glibc it brings, ran in the musl image.
    const workerLog = await podman.logs(`${podName}-worker`);
    expect(workerLog).toContain('idle: exiting with code 0');
    expect(workerLog).toMatch(/"container":"worker","event":"exited"/);

    const glibcFiles = await podman.run(['run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', MUSL_IMAGE, '-c', 'find / -xdev -name "libc.so.6" -o -name "ld-linux-x86-64.so.2"']);
    expect(glibcFiles.trim()).toBe('');
  }, 120_000);

  it('non-root and read-only containers complete', async () => {
    const podName = `${POD_PREFIX}users-job`;
    await startPod(
      podName,
      `
apiVersion: batch/v1
kind: Job
metadata:
  name: users-job
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: restricted
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env:
            - { name: ECI_SIDECAR_CONTAINER, value: "true" }
          securityContext:
            runAsUser: 65534
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop: [ALL]
        - name: first
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "echo uid=$(id -u); sleep 0.3"]
          securityContext:
            runAsUser: 1001
        - name: second
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "echo uid=$(id -u); sleep 0.6"]
          securityContext:
            runAsUser: 1002
`,
    );

    const states = await waitForExit(podName, 3);
    expect(states.get('restricted')?.exitCode).toBe(0);
    expect(states.get('first')?.exitCode).toBe(0);
    expect(states.get('second')?.exitCode).toBe(0);

    expect(await podman.logs(`${podName}-restricted`)).toContain('idle: started as pid');
    expect(await podman.logs(`${podName}-restricted`)).toMatch(/uid 65534\b/);
    expect(await podman.logs(`${podName}-first`)).toContain('uid=1001');
    expect(await podman.logs(`${podName}-second`)).toContain('uid=1002');
  }, 120_000);

  it('pod deletion stops sidecar last', async () => {
    const podName = `${POD_PREFIX}delete`;
    await startPod(
      podName,
      `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: delete
spec:
  selector:
    matchLabels: { app: delete }
  template:
    metadata:
      labels: { app: delete }
    spec:
      terminationGracePeriodSeconds: 10
      containers:
        - name: proxy
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'echo proxy received SIGTERM; exit 0' TERM; echo proxy serving; while true; do sleep 0.1; done"]
          env:
            - { name: ECI_SIDECAR_CONTAINER, value: "true" }
        - name: web
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'echo web draining; sleep 2; echo web drained; exit 0' TERM; echo web serving; while true; do sleep 0.1; done"]
`,
    );
    await poll('web to serve', 60_000, async () => ((await podman.logs(`${podName}-web`)).includes('web serving') ? true : undefined));

    const stopStart = Date.now();
    await podman.stopPod(podName, 10);
    const stopMs = Date.now() - stopStart;

    const proxy = await podman.inspectContainer(`${podName}-proxy`);
    const web = await podman.inspectContainer(`${podName}-web`);
    expect(web.exitCode).toBe(0);
    expect(proxy.exitCode).toBe(0);
    // podman can record the same FinishedAt for containers that one `pod stop` ended, so the
    // supervisors' records give the order and podman's times only must not contradict it.
    expect(proxy.finishedAt).toBeGreaterThanOrEqual(web.finishedAt);
    const records = await readStatus(podName, 'proxy');
    const webExited = Date.parse(records.get('web')?.times.exited ?? '');
    const proxyExited = Date.parse(records.get('proxy')?.times.exited ?? '');
    expect(webExited).not.toBeNaN();
    expect(proxyExited).toBeGreaterThan(webExited);
    expect(await podman.logs(`${podName}-web`)).toContain('web drained');
    expect(await podman.logs(`${podName}-proxy`)).toContain('proxy received SIGTERM');
    // The web container drains for 2 s; podman's SIGKILL would come at 10 s.
    expect(stopMs).toBeGreaterThanOrEqual(2000);
    expect(stopMs).toBeLessThan(6000);
    console.log(`pod stop took ${stopMs} ms; proxy exited ${proxyExited - webExited} ms after web (podman: ${proxy.finishedAt - web.finishedAt} ms)`);
  }, 120_000);

  it('OOM-killed app ends the Job', async () => {
    const podName = `${POD_PREFIX}oom`;
    await startPod(
      podName,
      `
apiVersion: batch/v1
kind: Job
metadata:
  name: oom
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: shipper
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]
          env:
            - { name: ECI_SIDECAR_CONTAINER, value: "true" }
        - name: hog
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "tail /dev/zero"]
          resources:
            limits:
              memory: 64Mi
`,
    );

    const hogName = `${podName}-hog`;
    const limit = (await podman.inspectContainer(hogName)).memoryLimitBytes;
    // podman 4.3 with cgroup v1 enforced the limit on the development machine but did not set
    // OOMKilled. Where the limit is missing or not enforced, the test sends the SIGKILL that the
    // OOM killer would, so the Job's behaviour is still checked.
    let killedBy = 'the kernel OOM killer';
    const hogExited = limit > 0 ? await poll('the hog to be OOM-killed', 20_000, async () => ((await podman.inspectContainer(hogName)).finishedAt > 0 ? true : undefined)).catch(() => false) : false;
    if (!hogExited) {
      killedBy = 'podman kill --signal KILL (simulated OOM kill)';
      await podman.run(['kill', '--signal', 'KILL', hogName]);
    }

    const states = await waitForExit(podName, 2);
    const hog = await podman.inspectContainer(hogName);
    console.log(`hog killed by ${killedBy}; memory limit ${limit} bytes, OOMKilled ${hog.oomKilled}`);
    expect(limit).toBe(64 * 1024 * 1024);
    expect(states.get('hog')?.exitCode).toBe(137);
    expect(states.get('shipper')?.exitCode).toBe(0);
  }, 120_000);

  it('ten sidecars keep launch and stop order', async () => {
    const podName = `${POD_PREFIX}priorities`;
    // Sidecars of the same priority start together. A busybox sidecar becomes ready only when its
    // file exists, so each start is compared with readiness, not with the sidecar's own start.
    await startPod(
      podName,
      `
apiVersion: batch/v1
kind: Job
metadata:
  name: priorities
spec:
  template:
    metadata:
      annotations:
        readiness.tandem.dev/mesh-a: file:/tmp/ready
        readiness.tandem.dev/mesh-b: file:/tmp/ready
        readiness.tandem.dev/cache-a: file:/tmp/ready
        readiness.tandem.dev/cache-b: file:/tmp/ready
    spec:
      restartPolicy: Never
      containers:
        - name: mesh-a
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'exit 0' TERM; sleep 0.4; touch /tmp/ready; while true; do sleep 0.1; done"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "30" }]
        - name: mesh-b
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'exit 0' TERM; sleep 0.2; touch /tmp/ready; while true; do sleep 0.1; done"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "30" }]
        - name: secrets-a
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "20" }]
        - name: secrets-b
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "20" }]
        - name: secrets-c
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "20" }]
        - name: cache-a
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'exit 0' TERM; sleep 0.3; touch /tmp/ready; while true; do sleep 0.1; done"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "10" }]
        - name: cache-b
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "trap 'exit 0' TERM; sleep 0.1; touch /tmp/ready; while true; do sleep 0.1; done"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "10" }]
        - name: logs-a
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "5" }]
        - name: logs-b
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "5" }]
        - name: logs-c
          image: ${DISTROLESS_IMAGE}
          command: ["/idle"]
          env: [{ name: ECI_SIDECAR_CONTAINER, value: "true" }, { name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "5" }]
        - name: migrate
          image: ${MUSL_IMAGE}
          command: ["/bin/idle", "--exit", "0", "--after", "800"]
          env: [{ name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "15" }]
        - name: server
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "sleep 0.5"]
          env: [{ name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "0" }]
        - name: report
          image: docker.io/library/busybox:latest
          command: ["sh", "-c", "sleep 0.2"]
          env: [{ name: ECI_CONTAINER_LAUNCH_PRIORITY, value: "-5" }]
`,
    );

    const states = await waitForExit(podName, 13, 120_000);
    for (const [name, state] of states) {
      expect(state.exitCode, `exit code of ${name}`).toBe(0);
    }

    const rows = [...(await readStatus(podName, 'mesh-a')).values()];
    const sidecars = rows.filter((row) => row.role === 'sidecar');
    const apps = rows.filter((row) => row.role === 'app');
    expect(sidecars).toHaveLength(10);
    expect(apps).toHaveLength(3);
    expect(new Set(rows.map((row) => row.priority))).toEqual(new Set([30, 20, 15, 10, 5, 0, -5]));

    const time = (row: StatusRow, phase: keyof StatusRow['times']): number => {
      const value = row.times[phase];
      expect(value, `${phase} time of ${row.name}`).toBeDefined();
      return Date.parse(value!);
    };

    // Launch: every container's command started after each sidecar of a higher priority was ready.
    for (const row of rows) {
      for (const sidecar of sidecars.filter((candidate) => candidate.priority > row.priority)) {
        expect(time(row, 'running'), `${row.name} started after ${sidecar.name} was ready`).toBeGreaterThanOrEqual(time(sidecar, 'ready'));
      }
    }

    // Stop: sidecars stopped after every app exited, and a lower priority stopped first.
    const lastAppExit = Math.max(...apps.map((app) => time(app, 'exited')));
    for (const sidecar of sidecars) {
      expect(time(sidecar, 'stopping'), `${sidecar.name} stopped after the apps exited`).toBeGreaterThanOrEqual(lastAppExit);
      for (const lower of sidecars.filter((candidate) => candidate.priority < sidecar.priority)) {
        expect(time(sidecar, 'exited'), `${sidecar.name} exited after ${lower.name}`).toBeGreaterThanOrEqual(time(lower, 'exited'));
      }
    }
  }, 180_000);
});
