import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parseAllDocuments, stringify } from 'yaml';
import { buildImages } from '../images/build.js';
import { podFromObject, resolveConfigMapVolumes, type ConfigMapSources } from './local-pod.js';
import { poll, Podman, type PodContainerState } from './podman.js';

/**
 * Runs the reference example end to end. The filebeat SidecarSet is applied to the echo-server
 * Deployment, tandem is injected, and the pod runs in podman. Then the same sidecar runs next to a
 * Job's worker.
 */

type Json = Record<string, any>;

/** Label that virtual nodes add to their pods after scheduling, which the SidecarSet selects. */
const VIRTUAL_NODE_LABEL = 'serverless.alibabacloud.com/virtual-node';
const TANDEM_IMAGE = 'localhost/tandem:dev';

export interface DeploymentReport {
  containers: PodContainerState[];
  filebeatConfig: string;
  echoServerLog: string;
  httpResponse: string;
  status: string;
}

export interface JobReport {
  requestedExitCode: number;
  /** `tandem status` while the worker ran. */
  runningStatus: string;
  containers: PodContainerState[];
  /** Time from the worker's exit to the sidecar's, from the supervisors' records. */
  sidecarStopMs: number;
  status: string;
}

export interface ReferenceOptions {
  repoRoot: string;
  workDir: string;
  print: (line: string) => void;
  /** Prefix of the pod names, so that runs in parallel (the tests and the example) do not collide. */
  podPrefix?: string;
}

export async function runDeployment(options: ReferenceOptions, podman: Podman): Promise<DeploymentReport> {
  const { print } = options;
  const podName = `${options.podPrefix ?? ''}echo-server`;
  const injected = await inject(options, 'echo-server.yaml');
  await playInjected(options, podman, injected, podName);

  const containers = await poll('2/2 containers running', 60_000, async () => {
    const states = await podman.containers(podName);
    return states.length === 2 && states.every((state) => state.state === 'running') ? states : undefined;
  });
  print(`pod ${podName}: ${containers.length}/2 containers running (${containers.map((state) => state.name).join(', ')})`);

  const sidecar = `${podName}-filebeat`;
  const filebeatConfig = await podman.exec(sidecar, ['cat', '/etc/filebeat.yml']);
  print(`\n$ cat /etc/filebeat.yml   # in the filebeat sidecar\n${filebeatConfig}`);

  const echoServerLog = await poll('the echo server’s listening line in its log copy', 30_000, async () => {
    const text = await podman.exec(sidecar, ['cat', '/var/log/std/echo-server/0.log']);
    return text.includes('Server is listening') ? text : undefined;
  });
  print(`\n$ cat /var/log/std/echo-server/0.log   # in the filebeat sidecar\n${echoServerLog.trimEnd()}`);

  const httpResponse = await podman.exec(sidecar, ['wget', '-qO-', 'http://127.0.0.1:8080/']);
  print(`\n$ wget -qO- http://127.0.0.1:8080/   # in the pod's own network namespace\n${httpResponse.trimEnd()}`);

  const status = await podman.exec(sidecar, ['/tandem/bin/tandem', 'status']);
  print(`\n$ tandem status\n${status.trimEnd()}`);

  await podman.removePod(podName);
  return { containers, filebeatConfig, echoServerLog, httpResponse, status };
}

export async function runJob(options: ReferenceOptions, podman: Podman, exitCode: number): Promise<JobReport> {
  const { print } = options;
  const podName = `${options.podPrefix ?? ''}echo-job-exit-${exitCode}`;
  const injected = await inject(options, 'echo-job.yaml', (job) => {
    job.spec.template.spec.containers[0].env[0].value = String(exitCode);
  });
  await playInjected(options, podman, injected, podName);

  // While the worker runs, the sidecar shows both containers as the records describe them.
  const running = await poll('the worker to run', 30_000, async () => {
    const table = await podman.exec(`${podName}-filebeat`, ['/tandem/bin/tandem', 'status']);
    return /worker\s+app\s+\S+\s+running/.test(table) ? table : undefined;
  });
  print(`\n$ tandem status   # in ${podName}, while the worker runs\n${running.trimEnd()}`);

  const containers = await poll('every container of the Job pod to exit', 60_000, async () => {
    const states = await podman.containers(podName);
    return states.length === 2 && states.every((state) => state.state === 'exited') ? states : undefined;
  });
  // The sidecar's volume outlives its process, so the records are read with a throwaway container.
  const statusJson = await podman.run(['run', '--rm', '--network', 'none', '--volumes-from', `${podName}-filebeat`, TANDEM_IMAGE, 'status', '--output', 'json']);
  const rows: Json[] = JSON.parse(statusJson).rows;
  const workerExit = Date.parse(rows.find((row) => row.name === 'worker')?.times.exited);
  const sidecarExit = Date.parse(rows.find((row) => row.name === 'filebeat')?.times.exited);
  const status = await podman.run(['run', '--rm', '--network', 'none', '--volumes-from', `${podName}-filebeat`, TANDEM_IMAGE, 'status']);

  print(`\nJob pod ${podName}: ${containers.map((state) => `${state.name} exited ${state.exitCode}`).join(', ')}; filebeat stopped ${sidecarExit - workerExit} ms after the worker`);
  print(status.trimEnd());
  await podman.removePod(podName);
  return { requestedExitCode: exitCode, runningStatus: running, containers, sidecarStopMs: sidecarExit - workerExit, status };
}

/** Applies the example's SidecarSet and tandem to one manifest of the example, as a virtual node would see it. */
async function inject(options: ReferenceOptions, file: string, edit?: (object: Json) => void): Promise<Json> {
  const object = readExample(options.repoRoot, file)[0]!;
  object.spec.template.metadata.labels[VIRTUAL_NODE_LABEL] = 'true';
  edit?.(object);

  const exampleDir = path.join(options.repoRoot, 'examples', 'reference');
  const result = await execa('node', [path.join(options.repoRoot, 'dist', 'agent', 'cli.js'), 'inject', '--no-registry', '--sidecarset', path.join(exampleDir, 'sidecarset.yaml'), '--image', TANDEM_IMAGE, '-'], {
    input: stringify(object),
  });
  options.print(String(result.stderr).trim());
  return parseAllDocuments(String(result.stdout))[0]!.toJS() as Json;
}

async function playInjected(options: ReferenceOptions, podman: Podman, injected: Json, podName: string): Promise<void> {
  const pod = podFromObject(injected, podName);
  const sources: ConfigMapSources = {
    configMaps: readExample(options.repoRoot, 'filebeat-config.yaml'),
    bindings: readExample(options.repoRoot, 'sidecarset-resourcebinding.yaml'),
    sidecarSets: readExample(options.repoRoot, 'sidecarset.yaml'),
  };
  resolveConfigMapVolumes(pod, sources, path.join(options.workDir, 'configmaps', podName));
  await podman.play(podName, stringify(pod));
}

function readExample(repoRoot: string, file: string): Json[] {
  const text = readFileSync(path.join(repoRoot, 'examples', 'reference', file), 'utf8');
  return parseAllDocuments(text).map((document) => document.toJS() as Json);
}

export async function prepare(options: ReferenceOptions): Promise<Podman> {
  const podman = new Podman(path.join(options.workDir, 'podman'));
  options.print('building the images offline with podman ...');
  const images = await buildImages({ repoRoot: options.repoRoot, containersConf: podman.containersConf });
  options.print(`images: ${images.join(', ')}\n`);
  return podman;
}

/** Names of every pod the example plays, so that an interrupted run can remove them. */
const EXAMPLE_PODS = ['echo-server', 'echo-job-exit-0', 'echo-job-exit-3'];

async function main(): Promise<void> {
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const options: ReferenceOptions = { repoRoot, workDir: path.join(repoRoot, 'build', 'example'), print: (line) => console.log(line) };
  const podman = await prepare(options);

  // Ctrl-C lets the running podman command finish, then removes the pods and their volumes and
  // exits with 130, as a shell reports SIGINT.
  process.once('SIGINT', () => {
    console.log('\ninterrupted: removing the example pods ...');
    void podman
      .shutdown()
      .then(() => Promise.all(EXAMPLE_PODS.map((podName) => podman.removePod(podName))))
      .finally(() => process.exit(130));
  });

  try {
    await runSteps(options, podman);
  } catch (error) {
    // An interrupted run ends through the SIGINT handler; its failing steps are expected.
    if (!podman.closed) {
      throw error;
    }
    await new Promise(() => undefined);
  }
}

async function runSteps(options: ReferenceOptions, podman: Podman): Promise<void> {
  await runDeployment(options, podman);
  for (const exitCode of [0, 3]) {
    const report = await runJob(options, podman, exitCode);
    const worker = report.containers.find((state) => state.name === 'worker');
    const sidecar = report.containers.find((state) => state.name === 'filebeat');
    const verdict = worker?.exitCode === 0 ? 'Job succeeded' : 'Job failed';
    console.log(`=> worker ${worker?.exitCode}, filebeat ${sidecar?.exitCode}: ${verdict}, as the worker's code decides.`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}
