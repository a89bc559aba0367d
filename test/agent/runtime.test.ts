import { chmod, copyFile, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findRepoRoot, RUNTIME_PATHS } from '../../agent/runtime/build.js';
import { installRuntime } from '../../agent/runtime/install.js';
import { VERSION } from '../../agent/version.js';
import { buildImages, HTTP_ECHO_IMAGE } from '../../images/build.js';
import { createLogger } from '../../supervisor/log.js';
import { readPodSpec, type PodSpec } from '../../supervisor/protocol/pod.js';

// These tests need root for chroot(8), and podman with runc. They read build/runtime, which
// `npm test` assembles first.

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
    const result = await execa('podman', ['image', 'inspect', '--format', '{{.Config.User}}', 'localhost/tandem:dev'], { env: podmanEnv });
    expect(result.stdout).toBe('65534');
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
