import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { writePodSpec, type PodContainer, type PodSpec, type RestartPolicy } from '../../supervisor/protocol/pod.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The built CLI, which `npm test` builds before running the tests. */
export const cliPath = path.resolve(process.env.TANDEM_TEST_CLI ?? path.join(repoRoot, 'dist', 'agent', 'cli.js'));

export interface TandemOptions {
  env?: Record<string, string>;
  cwd?: string;
  input?: string;
  stripFinalNewline?: boolean;
}

/** Starts `tandem` as a real process with the given arguments; its output is text. */
export function tandem(args: readonly string[], options: TandemOptions = {}) {
  return execa('node', [cliPath, ...args], { reject: false, stripFinalNewline: true, ...options });
}

/** The runtime that `tandem install` copies into pods: Node.js 24 behind the static launcher and tini. */
export const runtimeTandemPath = path.join(repoRoot, 'build', 'runtime', 'bin', 'tandem');

/** Starts the runtime's `tandem`, as a pod's container runs it. */
export function runtimeTandem(args: readonly string[], options: TandemOptions = {}) {
  return execa(runtimeTandemPath, args, { reject: false, stripFinalNewline: true, ...options });
}

/** Resolves once `text` appears on the process's stdout. */
export function waitForOutput(child: { stdout: NodeJS.ReadableStream | null }, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      if (seen.includes(text)) {
        resolve();
      }
    });
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Reports whether a process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Creates an empty shared volume in a temporary directory, with the state and logs folders. */
export function makeSharedDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tandem-shared-'));
  mkdirSync(path.join(dir, 'state'));
  mkdirSync(path.join(dir, 'logs'));
  return dir;
}

/** Writes a pod spec with the given containers, as the init container would. */
export async function writePod(sharedDir: string, containers: PodContainer[], restartPolicy: RestartPolicy = 'Never'): Promise<PodSpec> {
  const spec: PodSpec = { version: 1, restartPolicy, terminationGracePeriodSeconds: 30, containers };
  await writePodSpec(sharedDir, spec);
  return spec;
}

/** Arguments of `tandem supervise` for one container of a pod in `sharedDir`. */
export function superviseArgs(sharedDir: string, name: string, role: 'app' | 'sidecar', command: readonly string[], extra: readonly string[] = []): string[] {
  return ['supervise', '--shared-dir', sharedDir, '--name', name, '--role', role, ...extra, '--', ...command];
}

/** Parses tandem's JSON log lines from a stderr text, skipping lines written by the command itself. */
export function logEvents(stderr: string): Record<string, any>[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{"level"'))
    .map((line) => JSON.parse(line) as Record<string, any>);
}
