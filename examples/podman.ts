import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';

/** Separator between the pod name and the volume name in podman's names of a pod's emptyDir volumes. */
export const EMPTY_DIR_SEPARATOR = '--';

/**
 * podman as a local stand-in for a Kubernetes node. Every pod runs with `--network none`, so a pod
 * has only its own loopback; podman's default bridge is never used.
 */
export class Podman {
  readonly containersConf: string;

  constructor(readonly workDir: string) {
    mkdirSync(workDir, { recursive: true });
    this.containersConf = path.join(workDir, 'containers.conf');
    // runc is the runtime known to work here, and the ulimits must stay within the machine's hard
    // limits because root in this sandbox cannot raise them.
    writeFileSync(this.containersConf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n\n[engine]\nruntime = "runc"\n');
  }

  /** Set by shutdown(): later commands are rejected so that nothing new starts during cleanup. */
  closed = false;
  private readonly inFlight = new Set<Promise<unknown>>();

  /** Rejects new commands and waits for the running ones, before an interrupted run cleans up. */
  async shutdown(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
  }

  /** Runs a podman command and returns its stdout; a failure throws with podman's stderr. */
  async run(args: readonly string[], input?: string): Promise<string> {
    if (this.closed) {
      throw new Error(`podman ${args[0]} not started: the run was interrupted.`);
    }
    // conmon writes an `oom` marker file into its working directory when a container is OOM-killed.
    const running = execa('podman', args, {
      env: { CONTAINERS_CONF: this.containersConf },
      cwd: this.workDir,
      input,
      reject: false,
    });
    this.inFlight.add(running);
    const result = await running.finally(() => this.inFlight.delete(running));
    if (result.exitCode !== 0) {
      throw new Error(`podman ${args.join(' ')} failed with code ${result.exitCode}: ${String(result.stderr).trim()}`);
    }
    return String(result.stdout);
  }

  /**
   * Starts the pod of a Pod manifest, replacing a pod of the same name and its emptyDir volumes,
   * which podFromObject names after the pod.
   */
  async play(podName: string, manifest: string): Promise<void> {
    await this.removePod(podName);
    const file = path.join(this.workDir, `${podName}.yaml`);
    writeFileSync(file, manifest);
    await this.run(['kube', 'play', '--network', 'none', file]);
  }

  /** Removes the pod and the emptyDir volumes that podFromObject named after it. */
  async removePod(podName: string): Promise<void> {
    await execa('podman', ['pod', 'rm', '--force', '--ignore', podName], { env: { CONTAINERS_CONF: this.containersConf }, reject: false });
    const volumes = await execa('podman', ['volume', 'ls', '--format', '{{.Name}}'], { env: { CONTAINERS_CONF: this.containersConf }, reject: false });
    const owned = String(volumes.stdout)
      .split('\n')
      .filter((name) => name.startsWith(`${podName}${EMPTY_DIR_SEPARATOR}`));
    await this.removeVolumes(owned);
  }

  /** Removes named volumes; volumes that do not exist are skipped. */
  async removeVolumes(names: readonly string[]): Promise<void> {
    for (const name of names) {
      await execa('podman', ['volume', 'rm', '--force', name], { env: { CONTAINERS_CONF: this.containersConf }, reject: false });
    }
  }

  /** Runs a command in a container and returns its stdout. */
  exec(container: string, command: readonly string[]): Promise<string> {
    return this.run(['exec', container, ...command]);
  }

  /** Returns each container of the pod (without the infra container) with its state and exit code. */
  async containers(podName: string): Promise<PodContainerState[]> {
    const output = await this.run(['ps', '--all', '--filter', `pod=${podName}`, '--format', 'json']);
    const entries = JSON.parse(output || '[]') as { Names: string[]; State: string; ExitCode: number; IsInfra: boolean }[];
    return entries
      .filter((entry) => !entry.IsInfra)
      .map((entry) => ({ name: entry.Names[0]!.slice(podName.length + 1), state: entry.State, exitCode: entry.ExitCode }));
  }

  /**
   * Stops every container of the pod as pod deletion does: SIGTERM (each container's stop signal)
   * to each container's PID 1, then SIGKILL to what still runs after `graceSeconds`.
   */
  async stopPod(podName: string, graceSeconds: number): Promise<void> {
    await this.run(['pod', 'stop', '--time', String(graceSeconds), podName]);
  }

  /** Returns a container's state and memory limit from `podman container inspect`. */
  async inspectContainer(container: string): Promise<ContainerInspection> {
    const output = await this.run(['container', 'inspect', '--format', 'json', container]);
    const [entry] = JSON.parse(output) as {
      Id: string;
      State: { ExitCode: number; OOMKilled: boolean; StartedAt: string; FinishedAt: string };
      HostConfig: { Memory: number };
    }[];
    if (entry === undefined) {
      throw new Error(`podman container inspect ${container} returned no container.`);
    }
    return {
      id: entry.Id,
      exitCode: entry.State.ExitCode,
      oomKilled: entry.State.OOMKilled,
      startedAt: parsePodmanTime(entry.State.StartedAt),
      finishedAt: parsePodmanTime(entry.State.FinishedAt),
      memoryLimitBytes: entry.HostConfig.Memory,
    };
  }

  async logs(container: string): Promise<string> {
    const result = await execa('podman', ['logs', container], { env: { CONTAINERS_CONF: this.containersConf }, reject: false, all: true });
    return String(result.all);
  }
}

export interface PodContainerState {
  name: string;
  state: string;
  exitCode: number;
}

export interface ContainerInspection {
  id: string;
  exitCode: number;
  /** Whether podman noticed an OOM kill. podman 4.3 on cgroup v1 reported false for a container the OOM killer ended. */
  oomKilled: boolean;
  /** Start and finish times in milliseconds since the epoch. */
  startedAt: number;
  finishedAt: number;
  /** The container's memory limit in bytes, 0 when it has none. */
  memoryLimitBytes: number;
}

/** Parses podman's RFC 3339 times. V8's Date.parse accepts their nanoseconds and keeps milliseconds. */
function parsePodmanTime(text: string): number {
  const time = Date.parse(text);
  if (Number.isNaN(time)) {
    throw new Error(`Invalid time from podman inspect: ${JSON.stringify(text)}.`);
  }
  return time;
}

/** Calls `probe` every `intervalMs` until it returns a value other than undefined, or throws at the timeout. */
export async function poll<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) {
        return value;
      }
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${detail}.`);
}
