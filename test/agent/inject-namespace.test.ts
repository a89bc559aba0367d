import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseManifests } from '../../agent/inject/io.js';
import type { KubeObject, PodTemplateSpec } from '../../agent/inject/k8s.js';
import { runInjectCli, type InjectCliResult } from '../support/inject.js';

const CLI = path.resolve('dist/agent/cli.js');

type CliResult = InjectCliResult;

let directory: string;

const runCli = runInjectCli;

function outputOf(result: CliResult): KubeObject[] {
  expect(result.stderr).not.toContain('error');
  expect(result.status).toBe(0);
  return parseManifests(result.stdout, 'CLI output') as KubeObject[];
}

function isInjected(object: KubeObject): boolean {
  const template = (object.spec as { template: PodTemplateSpec }).template;
  return template.spec.initContainers?.[0]?.name === 'tandem-init';
}

function namespace(name: string, inject?: string): string {
  const labels = inject === undefined ? '' : `  labels:\n    tandem.dev/inject: ${inject}\n`;
  return `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n${labels}`;
}

function deployment(name: string, namespaceName: string | undefined, annotation?: string): string {
  const namespaceLine = namespaceName === undefined ? '' : `  namespace: ${namespaceName}\n`;
  const annotations = annotation === undefined ? '' : `    metadata:\n      annotations:\n        tandem.dev/inject: ${annotation}\n`;
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
${namespaceLine}spec:
  selector:
    matchLabels:
      app: ${name}
  template:
${annotations}    spec:
      containers:
      - name: app
        image: registry.example/${name}:1
        command: ["/${name}"]
`;
}

function stream(...documents: string[]): string {
  return documents.join('---\n');
}

beforeAll(() => {
  if (!existsSync(CLI)) {
    throw new Error(`${CLI} is missing. Run \`npm run build\` first.`);
  }
  directory = mkdtempSync(path.join(tmpdir(), 'tandem-inject-namespace-'));
});

afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('tandem inject namespace opt-out', () => {
  it('leaves a disabled namespace untouched', () => {
    const app = deployment('legacy-app', 'legacy');
    const result = runCli([], stream(namespace('legacy', 'disabled'), app));
    const [ns, output] = outputOf(result);
    expect(ns).toEqual(parse(namespace('legacy', 'disabled')));
    expect(output).toEqual(parse(app));
    expect(result.stderr).toContain('Deployment/legacy-app in namespace legacy: tandem not injected, namespace legacy has the label tandem.dev/inject: disabled');
  });

  it('injects objects in other namespaces', () => {
    const result = runCli([], stream(namespace('legacy', 'disabled'), deployment('old', 'legacy'), deployment('new', 'current')));
    const [, old, current] = outputOf(result);
    expect(isInjected(old!)).toBe(false);
    expect(isInjected(current!)).toBe(true);
    expect(result.stderr).toContain('Deployment/new in namespace current: injected tandem');
  });

  it('applies the label to objects after the Namespace', () => {
    const result = runCli([], stream(deployment('first', 'legacy'), namespace('legacy', 'disabled')));
    const [first] = outputOf(result);
    expect(isInjected(first!)).toBe(false);
  });

  it('uses --namespace for objects without one', () => {
    const input = stream(namespace('legacy', 'disabled'), deployment('plain', undefined));
    const [, inLegacy] = outputOf(runCli(['--namespace', 'legacy'], input));
    const [, inDefault] = outputOf(runCli([], input));
    expect(isInjected(inLegacy!)).toBe(false);
    expect(isInjected(inDefault!)).toBe(true);
  });

  it('lets a pod annotation override a disabled namespace', () => {
    const result = runCli([], stream(namespace('legacy', 'disabled'), deployment('opted-in', 'legacy', 'enabled')));
    const [, output] = outputOf(result);
    expect(isInjected(output!)).toBe(true);
    expect(result.stderr).toContain('Deployment/opted-in in namespace legacy: injected tandem');
  });

  it('lets a pod annotation opt out of an enabled namespace', () => {
    const result = runCli([], stream(namespace('jobs', 'enabled'), deployment('skip', 'jobs', 'disabled')));
    const [, output] = outputOf(result);
    expect(isInjected(output!)).toBe(false);
    expect(result.stderr).toContain('Deployment/skip in namespace jobs: tandem not injected, the pod template sets tandem.dev/inject: disabled');
  });

  it.each([
    ['an enabled namespace', namespace('jobs', 'enabled')],
    ['an unlabelled namespace', namespace('jobs')],
  ])('injects into %s', (_case, namespaceDocument) => {
    const [, output] = outputOf(runCli([], stream(namespaceDocument, deployment('batch', 'jobs'))));
    expect(isInjected(output!)).toBe(true);
  });

  it('rejects an invalid namespace label', () => {
    const result = runCli([], stream(namespace('legacy', 'maybe'), deployment('app', 'legacy')));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('Invalid label tandem.dev/inject "maybe" on Namespace/legacy: expected enabled or disabled.');
  });
});
