import { access } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { execa, parseCommandString } from 'execa';
import type { Readiness } from './readiness-spec.js';

/** Time one check may take before it counts as failed. */
const CHECK_TIMEOUT_MS = 1000;

/** Runs one readiness check and reports whether it passed. */
export async function checkReadiness(readiness: Readiness, env: NodeJS.ProcessEnv): Promise<boolean> {
  switch (readiness.kind) {
    case 'started':
      return true;
    case 'file':
      return access(readiness.path).then(
        () => true,
        () => false,
      );
    case 'tcp':
      return checkTcp(readiness.port);
    case 'http':
      return checkHttp(readiness.url);
    case 'exec': {
      const [file, ...args] = parseCommandString(readiness.command);
      const result = await execa(file!, args, { env, extendEnv: false, reject: false, timeout: CHECK_TIMEOUT_MS, stdio: 'ignore' });
      return result.exitCode === 0;
    }
  }
}

function checkTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: CHECK_TIMEOUT_MS });
    const finish = (ready: boolean): void => {
      socket.destroy();
      resolve(ready);
    };
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    socket.once('timeout', () => finish(false));
  });
}

/** Sends a GET and reports whether the status is 2xx; redirects and errors are not ready. */
function checkHttp(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const outgoing = request(url, { method: 'GET', timeout: CHECK_TIMEOUT_MS, agent: false }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      resolve(status >= 200 && status < 300);
    });
    outgoing.once('error', () => resolve(false));
    outgoing.once('timeout', () => {
      outgoing.destroy();
      resolve(false);
    });
    outgoing.end();
  });
}

/** Time between checks: cheap checks run often so apps start soon after, exec checks less often. */
function intervalMs(readiness: Readiness): number {
  return readiness.kind === 'exec' ? 250 : 50;
}

/**
 * Repeats the check until it passes (true) or the command exits first (false). A check never
 * passes for a command that is gone, so a stale success cannot release the apps.
 */
export async function waitUntilReady(readiness: Readiness, exited: Promise<unknown>, env: NodeJS.ProcessEnv): Promise<boolean> {
  let commandExited = false;
  void exited.then(() => {
    commandExited = true;
  });

  while (!commandExited) {
    if ((await checkReadiness(readiness, env)) && !commandExited) {
      return true;
    }
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, intervalMs(readiness)))]);
  }
  return false;
}
