import { chmod, copyFile, mkdir, mkdtemp, readdir, readlink, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devRuntimeDir, findRepoRoot, RUNTIME_PATHS } from '../../agent/runtime/build.js';
import { installRuntime } from '../../agent/runtime/install.js';
import { VERSION } from '../../agent/version.js';
import { buildImages, HTTP_ECHO_IMAGE } from '../../images/build.js';
import { createLogger } from '../../supervisor/log.js';
import { readPodSpec, type PodSpec } from '../../supervisor/protocol/pod.js';

// These tests need root for chroot(8) and unshare(1), and podman with runc. They read
// build/runtime, which `npm test` assembles first.

const repoRoot = findRepoRoot(fileURLToPath(import.meta.url));
const silent = createLogger('silent');
const POD_SPEC: PodSpec = {
  version: 1,
  restartPolicy: 'Always',
  terminationGracePeriodSeconds: 30,
  containers: [{ name: 'app', role: 'app', priority: 0 }],
};
/** Would make Node.js exit at startup if the launcher passed it to tandem's own Node.js. */
const POISONED_NODE_OPTIONS = '--require /nonexistent/preload.cjs';
/** chroot(8) options that run the command as nobody, the user of the tandem image. */
const AS_NOBODY = { chrootOptions: ['--userspec=65534:65534', '--groups=65534'] };

let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(os.tmpdir(), 'tandem-runtime-test-'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('runtime in a chroot without glibc or Node.js', () => {
  let rootDir: string;

  /** Runs the installed launcher inside the chroot, where the only other file is busybox. */
  function tandemInChroot(args: string[], options: { env?: Record<string, string>; chrootOptions?: string[] } = {}) {
    // An absolute path, because the environment is empty and so has no PATH.
    return execa('/usr/sbin/chroot', [...(options.chrootOptions ?? []), rootDir, '/tandem/bin/tandem', ...args], {
      env: options.env ?? {},
      extendEnv: false,
      reject: false,
    });
  }

  beforeAll(async () => {
    rootDir = path.join(workDir, 'chroot');
    await mkdir(path.join(rootDir, 'bin'), { recursive: true });
    await copyFile('/bin/busybox', path.join(rootDir, 'bin', 'busybox'));
    await installRuntime(path.join(rootDir, 'tandem'), { logger: silent });
  });

  it('contains only busybox and the runtime', async () => {
    expect((await readdir(rootDir)).sort()).toEqual(['bin', 'tandem']);
    expect(await readdir(path.join(rootDir, 'bin'))).toEqual(['busybox']);
  });

  it('prints the version', async () => {
    const result = await tandemInChroot(['--version']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(VERSION);
  });

  it('ignores the app NODE_OPTIONS', async () => {
    const result = await tandemInChroot(['--version'], { env: { NODE_OPTIONS: POISONED_NODE_OPTIONS } });
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(VERSION);
  });

  it.each(['', 'a b', '$x', '*', 'ü'])('passes argument %j unchanged', async (value) => {
    const result = await tandemInChroot(['install', '/unused', '--pod-json', value], { env: { NODE_OPTIONS: POISONED_NODE_OPTIONS } });
    expect(result.stderr).toContain(`Invalid pod spec in --pod-json ${JSON.stringify(value)}:`);
    expect(result.exitCode).toBe(1);
  });

  it('runs as uid 65534', async () => {
    const result = await tandemInChroot(['--version'], AS_NOBODY);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(VERSION);
  });

  describe('install as uid 65534 into a root-owned volume', () => {
    /** Creates /volume with mode 0777 and /volume/logs with the given mode, both owned by root like an emptyDir mount. */
    async function makeVolume(logsMode: number): Promise<void> {
      const volume = path.join(rootDir, 'volume');
      await rm(volume, { recursive: true, force: true });
      await mkdir(path.join(volume, 'logs'), { recursive: true });
      await chmod(volume, 0o777);
      await chmod(path.join(volume, 'logs'), logsMode);
    }

    afterAll(async () => {
      await rm(path.join(rootDir, 'volume'), { recursive: true, force: true });
    });

    it('accepts a logs directory with mode 0777', async () => {
      await makeVolume(0o777);
      const result = await tandemInChroot(['install', '/volume'], AS_NOBODY);
      expect(result.exitCode).toBe(0);
      expect(result.stderr).toContain('chmod of a shared directory failed, and its existing mode lets every UID write');
    });

    it('rejects a logs directory with mode 0755', async () => {
      await makeVolume(0o755);
      const result = await tandemInChroot(['install', '/volume'], AS_NOBODY);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain('tandem install: /volume/logs has mode 755 and chmod to 1777 failed (EPERM)');
    });
  });

  /**
   * Runs a command in the chroot in new mount and PID namespaces with /proc mounted, as a container
   * runs it: the command is PID 1. The mount ends with the namespace, and /proc is removed again so
   * that the chroot keeps only busybox and the runtime.
   */
  async function inContainer(command: string[], env: Record<string, string> = {}) {
    const procDir = path.join(rootDir, 'proc');
    await mkdir(procDir);
    try {
      const unshare = ['--mount', '--pid', '--fork', `--mount-proc=${procDir}`, '/usr/sbin/chroot', rootDir, ...command];
      return await execa('/usr/bin/unshare', unshare, { env, extendEnv: false, reject: false });
    } finally {
      await rmdir(procDir);
    }
  }

  it('runs ps with the options of tree-kill', async () => {
    // busybox sh stays PID 1 because ps is not its last command, so ps is its only child.
    const result = await inContainer(['/bin/busybox', 'sh', '-c', '/tandem/bin/ps -o pid --no-headers --ppid 1; echo "ps exited $?"']);
    const lines = result.stdout.split('\n');

    expect(result.stderr).toBe('');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^ *\d+$/);
    expect(Number(lines[0])).toBeGreaterThan(1);
    expect(lines[1]).toBe('ps exited 0');
  });

  it.each([
    ['exit 3', 3],
    ['kill -SEGV $$', 139],
  ])('supervise under tini returns the exit of %j', async (script, exitCode) => {
    const result = await inContainer(['/tandem/bin/tandem', 'supervise', '--', '/bin/busybox', 'sh', '-c', script]);
    expect(result.exitCode).toBe(exitCode);
  });

  it('reports 128+N when signal N kills the supervisor', async () => {
    // When tini exits as PID 1, the kernel kills the rest of the namespace, so the sleep ends with it.
    const result = await inContainer(['/tandem/bin/tandem', 'supervise', '--', '/bin/busybox', 'sh', '-c', 'kill -KILL $PPID; /bin/busybox sleep 5']);
    expect(result.exitCode).toBe(137);
  });

  /** Script that prints the supervisor's parent, the parent's executable and the command's TANDEM_REAPER_PID. */
  const PRINT_SUPERVISOR_PARENT = [
    'read -r pid name state parent rest < /proc/$PPID/stat',
    'echo "parent=$parent"',
    'echo "exe=$(/bin/busybox readlink /proc/$parent/exe)"',
    'echo "reaper=${TANDEM_REAPER_PID-unset}"',
  ].join('; ');

  it('runs the supervisor under tini', async () => {
    const result = await inContainer(['/tandem/bin/tandem', 'supervise', '--', '/bin/busybox', 'sh', '-c', PRINT_SUPERVISOR_PARENT]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('parent=1\nexe=/tandem/libexec/tini\nreaper=unset');
  });

  it.each(['1', 'true', 'YES'])('runs the supervisor without tini when TANDEM_NO_REAPER=%s', async (value) => {
    const result = await inContainer(['/tandem/bin/tandem', 'supervise', '--', '/bin/busybox', 'sh', '-c', PRINT_SUPERVISOR_PARENT], {
      TANDEM_NO_REAPER: value,
    });
    expect(result.exitCode).toBe(0);
    // Without tini the supervisor is PID 1 itself, so its parent is outside the namespace (PID 0).
    expect(result.stdout).toBe('parent=0\nexe=\nreaper=unset');
  });

  it('rejects an invalid TANDEM_NO_REAPER', async () => {
    const result = await tandemInChroot(['supervise', '--', '/bin/busybox', 'true'], { env: { TANDEM_NO_REAPER: 'maybe' } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('tandem: TANDEM_NO_REAPER="maybe" is invalid: expected 1, true or yes');
  });

  it('installs from the installed runtime', async () => {
    try {
      const result = await tandemInChroot(['install', '/copy', '--pod-json', JSON.stringify(POD_SPEC)]);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stderr)).toMatchObject({ msg: 'runtime installed', source: '/tandem', target: '/copy', version: VERSION });
    } finally {
      await rm(path.join(rootDir, 'copy'), { recursive: true, force: true });
    }
  });
});

describe('supervise under tini on the host', () => {
  const runtimeRoot = devRuntimeDir(repoRoot);
  const launcher = path.join(runtimeRoot, RUNTIME_PATHS.launcher);

  it.each([{}, { TINI_VERBOSITY: '3' }])('prints nothing from tini with %j', async (tiniEnv) => {
    // Outside PID 1, tini without -s would print a warning that it cannot reap zombies. The app's
    // TINI_VERBOSITY would make tini print debug messages if the launcher left it in place.
    const result = await execa(launcher, ['supervise', '--log-level', 'silent', '--', 'echo', 'hello'], {
      env: { PATH: '/usr/bin:/bin', ...tiniEnv },
      extendEnv: false,
      reject: false,
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe('hello');
    expect(result.stderr).toBe('');
  });

  it('reaps orphaned grandchildren', async () => {
    // Each subshell exits at once, so its sleep is re-parented to the nearest subreaper, tini. The
    // script lists tini's children while the sleeps run and again after they have exited.
    const script = [
      'read -r pid name state tini rest < /proc/$PPID/stat',
      '(sleep 0.3 &)',
      '(sleep 0.3 &)',
      'sleep 0.1',
      'ps -o stat=,comm= --ppid $tini | sed "s/^/running: /"',
      'sleep 1',
      'ps -o stat=,comm= --ppid $tini | sed "s/^/ended: /"',
    ].join('; ');
    const result = await execa(launcher, ['supervise', '--log-level', 'silent', '--', 'sh', '-c', script], {
      env: { PATH: '/usr/bin:/bin' },
      extendEnv: false,
      reject: false,
    });
    /** Children of tini that ps listed in one phase, with their state (Z for a zombie) and command name. */
    const childrenIn = (phase: string) =>
      result.stdout
        .split('\n')
        .filter((line) => line.startsWith(`${phase}: `))
        .map((line) => line.slice(phase.length + 2).trim().split(/ +/))
        .map(([state = '', name = '']) => ({ state, name }));
    const running = childrenIn('running');
    const ended = childrenIn('ended');

    expect(result.exitCode).toBe(0);
    expect(running.filter((child) => child.name === 'sleep' && !child.state.startsWith('Z'))).toHaveLength(2);
    expect(ended.filter((child) => child.name === 'sleep')).toEqual([]);
    expect(ended.filter((child) => child.state.startsWith('Z'))).toEqual([]);
  });

  it('ignores TINI_KILL_PROCESS_GROUP of the app', async () => {
    // The variable makes tini act as with -g, which would also send SIGTERM straight to the command.
    // The command records each signal it gets, and the supervisor stops it with SIGUSR1.
    const script = 'trap "echo TERM" TERM; trap "echo USR1; exit 0" USR1; echo ready; while :; do sleep 0.05; done';
    const child = execa(launcher, ['supervise', '--log-level', 'silent', '--stop-signal', 'SIGUSR1', '--', 'sh', '-c', script], {
      env: { PATH: '/usr/bin:/bin', TINI_KILL_PROCESS_GROUP: '1' },
      extendEnv: false,
      reject: false,
    });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('ready')) {
          resolve();
        }
      });
      child.then((result) => reject(new Error(`tandem supervise exited with ${result.exitCode} before the command was ready: ${result.stderr}`)), reject);
    });

    // The launcher replaced itself with tini, so the child's PID is tini's.
    const exe = await readlink(`/proc/${child.pid}/exe`);
    process.kill(child.pid!, 'SIGTERM');
    const result = await child;

    expect(exe).toBe(path.join(runtimeRoot, RUNTIME_PATHS.tini));
    expect(result.stdout).toBe('ready\nUSR1');
    expect(result.exitCode).toBe(0);
  });

  it('passes TANDEM_REAPER_PID to the supervisor', async () => {
    // The supervisor removes TANDEM_REAPER_PID from the command's environment, so the script reads the supervisor's from /proc.
    const script = 'tr "\\0" "\\n" < /proc/$PPID/environ | grep "^TANDEM_REAPER_PID="; read -r pid name state parent rest < /proc/$PPID/stat; echo "parent=$parent"';
    const child = execa(launcher, ['supervise', '--log-level', 'silent', '--', 'sh', '-c', script], {
      env: { PATH: '/usr/bin:/bin', TANDEM_REAPER_PID: '1' },
      extendEnv: false,
      reject: false,
    });
    const result = await child;
    const [reaper, parent] = result.stdout.split('\n');

    // The launcher and tini have the same PID, because the launcher replaced itself with tini.
    expect(result.exitCode).toBe(0);
    expect(reaper).toBe(`TANDEM_REAPER_PID=${child.pid}`);
    expect(parent).toBe(`parent=${child.pid}`);
  });
});

describe('installRuntime', () => {
  it('skips a runtime that is already installed', async () => {
    const target = path.join(workDir, 'twice');
    const first = await installRuntime(target, { logger: silent });
    const nodeBefore = await stat(path.join(target, RUNTIME_PATHS.node));
    const second = await installRuntime(target, { logger: silent });
    const nodeAfter = await stat(path.join(target, RUNTIME_PATHS.node));

    expect(first.skipped).toBe(false);
    expect(second.skipped).toBe(true);
    expect(nodeAfter.ino).toBe(nodeBefore.ino);
  });

  it('copies again when a file is missing', async () => {
    const target = path.join(workDir, 'damaged');
    await installRuntime(target, { logger: silent });
    await rm(path.join(target, RUNTIME_PATHS.cli));

    const result = await installRuntime(target, { logger: silent });
    expect(result.skipped).toBe(false);
    expect((await stat(path.join(target, RUNTIME_PATHS.cli))).isFile()).toBe(true);
  });

  it('makes every file readable by all', async () => {
    const target = path.join(workDir, 'modes');
    await installRuntime(target, { logger: silent });
    const entries = await readdir(target, { recursive: true, withFileTypes: true });

    for (const entry of entries) {
      const file = path.join(entry.parentPath, entry.name);
      const mode = (await stat(file)).mode;
      expect({ file, readable: (mode & 0o444) === 0o444 }).toEqual({ file, readable: true });
    }
  });

  it('makes the programs executable by all', async () => {
    const target = path.join(workDir, 'executables');
    await installRuntime(target, { logger: silent });

    for (const program of [RUNTIME_PATHS.launcher, RUNTIME_PATHS.psLauncher, RUNTIME_PATHS.node, RUNTIME_PATHS.ps, RUNTIME_PATHS.tini, RUNTIME_PATHS.loader]) {
      const mode = (await stat(path.join(target, program))).mode & 0o777;
      expect({ program, mode: mode.toString(8) }).toEqual({ program, mode: '755' });
    }
  });

  it('creates state and logs with mode 1777', async () => {
    const target = path.join(workDir, 'shared-dirs');
    await mkdir(path.join(target, 'logs'), { recursive: true, mode: 0o755 });
    await installRuntime(target, { logger: silent });

    expect((await stat(path.join(target, 'state'))).mode & 0o7777).toBe(0o1777);
    expect((await stat(path.join(target, 'logs'))).mode & 0o7777).toBe(0o1777);
  });

  it('writes the pod spec', async () => {
    const target = path.join(workDir, 'pod-spec');
    await installRuntime(target, { podJson: JSON.stringify(POD_SPEC), logger: silent });
    expect(await readPodSpec(target)).toEqual(POD_SPEC);
  });

  it('rejects an invalid pod spec before copying', async () => {
    const target = path.join(workDir, 'invalid-spec');
    await expect(installRuntime(target, { podJson: '{"version":2}', logger: silent })).rejects.toThrow(
      'Invalid pod spec in --pod-json "{\\"version\\":2}": version 2 is not supported, expected 1.',
    );
    await expect(stat(target)).rejects.toThrow('ENOENT');
  });

  it('names the build command when the runtime is missing', async () => {
    const source = path.join(workDir, 'no-runtime');
    await expect(installRuntime(path.join(workDir, 'unused'), { source, logger: silent })).rejects.toThrow('run `npm run build`');
  });
});

describe('images', () => {
  const echoContainer = `tandem-test-http-echo-${process.pid}`;
  let podmanEnv: Record<string, string>;
  let echo: ReturnType<typeof startHttpEcho>;
  let echoStderr = '';

  function startHttpEcho() {
    const args = ['run', '--rm', '--name', echoContainer, '--network', 'none', HTTP_ECHO_IMAGE, '-listen=:8080', '-text=hello world'];
    return execa('podman', args, { reject: false, env: podmanEnv });
  }

  beforeAll(async () => {
    const containersConf = path.join(workDir, 'containers.conf');
    await writeFile(containersConf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n');
    podmanEnv = { CONTAINERS_CONF: containersConf };
    await buildImages({ repoRoot, containersConf });

    echo = startHttpEcho();
    await new Promise<void>((resolve, reject) => {
      echo.stderr.on('data', (chunk: Buffer) => {
        echoStderr += chunk.toString();
        if (echoStderr.includes('\n')) {
          resolve();
        }
      });
      echo.then((result) => reject(new Error(`http-echo exited early with ${result.exitCode}: ${result.stderr}`)), reject);
    });
  });

  afterAll(async () => {
    await execa('podman', ['rm', '--force', '--ignore', echoContainer], { env: podmanEnv, reject: false });
  });

  it('runs tandem --version in the tandem image', async () => {
    const result = await execa('podman', ['run', '--rm', '--network', 'none', 'localhost/tandem:dev', '--version'], { env: podmanEnv });
    expect(result.stdout).toBe(VERSION);
  });

  it('runs the tandem image as uid 65534', async () => {
    // Numeric user and group, so that Kubernetes' runAsNonRoot can check the user without /etc/passwd.
    const result = await execa('podman', ['image', 'inspect', '--format', '{{.Config.User}}', 'localhost/tandem:dev'], { env: podmanEnv });
    expect(result.stdout).toBe('65534:65534');
  });

  it('logs the http-echo listening line on stderr', () => {
    expect(echoStderr).toMatch(/^\d{4}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2} Server is listening on :8080\n$/);
  });

  it('serves the http-echo text', async () => {
    const result = await execa('podman', ['exec', echoContainer, 'wget', '-qO-', 'http://127.0.0.1:8080/'], { env: podmanEnv });
    expect(result.stdout).toBe('hello world');
  });

  it('stops http-echo on SIGTERM', async () => {
    const started = performance.now();
    await execa('podman', ['kill', '--signal', 'TERM', echoContainer], { env: podmanEnv });
    const result = await echo;

    expect(result.exitCode).toBe(143);
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});
