import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { KubeObject, KubePodSpec, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { restrictedContainerViolations, restrictedViolations } from '../../agent/inject/pod-security.js';
import { runInjectCli, type InjectCliResult } from '../support/inject.js';

const CLI = path.resolve('dist/agent/cli.js');
const SIDECARSET = path.resolve('examples/reference/sidecarset.yaml');
const WARNING = 'Pod Security Standards "restricted" profile';

type CliResult = InjectCliResult;

let directory: string;

const runCli = runInjectCli;

function injectedSpec(result: CliResult): KubePodSpec {
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  const [deployment] = parseManifests(result.stdout, 'CLI output') as KubeObject[];
  return (deployment!.spec as { template: PodTemplateSpec }).template.spec;
}

function inputSpec(input: string): KubePodSpec {
  return ((parse(input) as KubeObject).spec as { template: PodTemplateSpec }).template.spec;
}

function containerNames(spec: KubePodSpec): string[] {
  return [...(spec.initContainers ?? []), ...spec.containers].map((container) => container.name);
}

// Every container sets its own restricted securityContext, and the pod has a ConfigMap volume, an
// init container and a sidecar.
const CONTAINER_LEVEL = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
        serverless.alibabacloud.com/virtual-node: "true"
      annotations:
        entrypoint.tandem.dev/filebeat: '[]'
    spec:
      initContainers:
      - name: migrate
        image: registry.example/web:1
        command: ["/migrate"]
        securityContext: &restricted
          runAsNonRoot: true
          allowPrivilegeEscalation: false
          capabilities:
            drop: ["ALL"]
            add: ["NET_BIND_SERVICE"]
          seccompProfile:
            type: RuntimeDefault
      containers:
      - name: web
        image: registry.example/web:1
        command: ["/web", "--port=80"]
        ports:
        - containerPort: 80
        securityContext: *restricted
        volumeMounts:
        - name: settings
          mountPath: /etc/web
      - name: proxy
        image: registry.example/proxy:1
        command: ["/proxy"]
        env:
        - name: ECI_SIDECAR_CONTAINER
          value: "true"
        securityContext:
          runAsNonRoot: true
          runAsUser: 1000
          allowPrivilegeEscalation: false
          capabilities:
            drop: ["ALL"]
          seccompProfile:
            type: Localhost
            localhostProfile: profiles/proxy.json
      volumes:
      - name: settings
        configMap:
          name: web-settings
`;

// runAsNonRoot and seccomp come from the pod-level securityContext only.
const POD_LEVEL = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  selector:
    matchLabels:
      app: worker
  template:
    metadata:
      labels:
        app: worker
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        fsGroup: 1000
        seccompProfile:
          type: RuntimeDefault
      containers:
      - name: worker
        image: registry.example/worker:1
        command: ["/worker"]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities:
            drop: ["ALL"]
`;

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
  }
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-inject-security-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('restricted profile after injection', () => {
  it.each([
    ['container-level securityContexts', CONTAINER_LEVEL],
    ['a pod-level securityContext', POD_LEVEL],
  ])('keeps a Deployment with %s compliant', (_case, input) => {
    expect(restrictedViolations(inputSpec(input))).toEqual([]);

    const result = runCli([], input);
    const spec = injectedSpec(result);
    expect(containerNames(spec)).toContain('tandem-init');
    for (const container of [...(spec.initContainers ?? []), ...spec.containers]) {
      expect(restrictedContainerViolations(spec, container), container.name).toEqual([]);
    }
    expect(restrictedViolations(spec)).toEqual([]);
    expect(result.stderr).not.toContain(WARNING);
  });

  it('leaves the pod-level securityContext as it was', () => {
    const spec = injectedSpec(runCli([], POD_LEVEL));
    expect(spec.securityContext).toEqual(inputSpec(POD_LEVEL).securityContext);
    expect(spec.containers[0]!.securityContext).toEqual(inputSpec(POD_LEVEL).containers[0]!.securityContext);
  });

  it('adds only emptyDir volumes', () => {
    const spec = injectedSpec(runCli([], CONTAINER_LEVEL));
    const added = (spec.volumes ?? []).filter((volume) => volume.name.startsWith('tandem'));
    expect(added).toEqual([
      { name: 'tandem', emptyDir: {} },
      { name: 'tandem-state', emptyDir: {} },
      { name: 'tandem-logs', emptyDir: {} },
    ]);
  });

  it('warns when a SidecarSet breaks compliance', () => {
    // The reference SidecarSet's filebeat container sets no securityContext at all.
    const result = runCli(['--sidecarset', SIDECARSET], CONTAINER_LEVEL);
    const spec = injectedSpec(result);
    expect(containerNames(spec)).toContain('filebeat');
    expect(result.stderr).toContain(`warning: Deployment/web met the ${WARNING} before injection but not after`);
    expect(result.stderr).toContain('container filebeat must set securityContext.allowPrivilegeEscalation: false');
  });

  it('does not warn about a pod that was not compliant', () => {
    const input = POD_LEVEL.replace('        seccompProfile:\n          type: RuntimeDefault\n', '');
    expect(restrictedViolations(inputSpec(input))).not.toEqual([]);
    expect(runCli([], input).stderr).not.toContain(WARNING);
  });
});

describe('restricted profile checker', () => {
  const compliant = (): KubePodSpec => ({
    securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
    containers: [{ name: 'app', image: 'app:1', securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } } }],
    volumes: [{ name: 'scratch', emptyDir: {} }],
  });

  it('accepts the compliant base spec', () => {
    expect(restrictedViolations(compliant())).toEqual([]);
  });

  it.each<[string, (spec: KubePodSpec) => void, string]>([
    ['a hostPath volume', (spec) => spec.volumes!.push({ name: 'host', hostPath: { path: '/' } }), 'volume host uses hostPath'],
    ['hostNetwork', (spec) => (spec.hostNetwork = true), 'the pod sets hostNetwork: true'],
    ['a privileged container', (spec) => (spec.containers[0]!.securityContext!.privileged = true), 'container app sets securityContext.privileged: true'],
    ['privilege escalation', (spec) => delete spec.containers[0]!.securityContext!.allowPrivilegeEscalation, 'allowPrivilegeEscalation: false'],
    ['runAsNonRoot false under a pod-level true', (spec) => (spec.containers[0]!.securityContext!.runAsNonRoot = false), 'container app must set securityContext.runAsNonRoot: true'],
    ['runAsUser 0', (spec) => (spec.containers[0]!.securityContext!.runAsUser = 0), 'container app sets securityContext.runAsUser: 0'],
    ['a missing seccomp profile', (spec) => delete (spec.securityContext as Record<string, unknown>).seccompProfile, 'seccompProfile.type to RuntimeDefault or Localhost'],
    ['an Unconfined container seccomp profile', (spec) => (spec.containers[0]!.securityContext!.seccompProfile = { type: 'Unconfined' }), 'container app must set securityContext.seccompProfile.type'],
    ['capabilities not dropped', (spec) => (spec.containers[0]!.securityContext!.capabilities = {}), 'container app must drop capability ALL'],
    ['an added SYS_ADMIN capability', (spec) => (spec.containers[0]!.securityContext!.capabilities!.add = ['NET_BIND_SERVICE', 'SYS_ADMIN']), 'adds capabilities SYS_ADMIN'],
    ['a host port', (spec) => (spec.containers[0]!.ports = [{ containerPort: 80, hostPort: 80 }]), 'container app uses host ports 80'],
  ])('rejects %s', (_case, change, violation) => {
    const spec = compliant();
    change(spec);
    const violations = restrictedViolations(spec);
    expect(violations.some((message) => message.includes(violation)), violations.join('\n')).toBe(true);
  });
});
