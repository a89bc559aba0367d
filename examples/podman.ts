import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';

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

  /** Runs a podman command and returns its stdout; a failure throws with podman's stderr. */
  async run(args: readonly string[], input?: string): Promise<string> {
    const result = await execa('podman', args, {
      env: { CONTAINERS_CONF: this.containersConf },
      input,
      reject: false,
    });
    if (result.exitCode !== 0) {
      throw new Error(`podman ${args.join(' ')} failed with code ${result.exitCode}: ${String(result.stderr).trim()}`);
    }
    return String(result.stdout);
  }

  /** Starts the pod of a Pod manifest, replacing a pod of the same name. */
  async play(podName: string, manifest: string): Promise<void> {
    await this.removePod(podName);
    const file = path.join(this.workDir, `${podName}.yaml`);
    writeFileSync(file, manifest);
    await this.run(['kube', 'play', '--network', 'none', file]);
  }

  async removePod(podName: string): Promise<void> {
    await execa('podman', ['pod', 'rm', '--force', '--ignore', podName], { env: { CONTAINERS_CONF: this.containersConf }, reject: false });
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
