import { describe, expect, it } from 'vitest';
import { formatManifests, parseManifestDocuments, parseManifests } from '../../agent/inject/io.js';
import { requireKubernetesObject, type KubeObject } from '../../agent/inject/k8s.js';
import { findPodTemplates } from '../../agent/inject/templates.js';

const podSpec = { containers: [{ name: 'c', image: 'i' }] };

describe('parseManifests', () => {
  it('reads every YAML document and drops empty ones', () => {
    const documents = parseManifests('---\na: 1\n---\n---\nb: 2\n', 'test.yaml');
    expect(documents).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it('reads JSON', () => {
    expect(parseManifests('{"kind": "Pod", "spec": {"x": [1, 2]}}', 'test.json')).toEqual([{ kind: 'Pod', spec: { x: [1, 2] } }]);
  });

  it('reads flow-style YAML that is not JSON', () => {
    expect(parseManifests('{kind: Pod}', 'test.yaml')).toEqual([{ kind: 'Pod' }]);
  });

  it('reads octal and booleans as kubectl does', () => {
    const [document] = parseManifests('mode: 0644\nenabled: yes\ndate: 2024-01-01\n', 'test.yaml');
    expect(document).toEqual({ mode: 420, enabled: true, date: '2024-01-01' });
  });

  it('gives aliased nodes separate copies', () => {
    const [document] = parseManifests('a: &shared {k: 1}\nb: *shared\n', 'test.yaml') as [{ a: { k: number }; b: { k: number } }];
    document.a.k = 2;
    expect(document.b.k).toBe(1);
  });

  it('names the file in a syntax error', () => {
    expect(() => parseManifests('a: [1, 2\n', 'broken.yaml')).toThrow(/Invalid YAML in broken.yaml/);
  });
});

describe('parseManifestDocuments', () => {
  it('counts empty documents in positions', () => {
    const documents = parseManifestDocuments('---\na: 1\n---\n---\nb: 2\n---\n', 'test.yaml');
    expect(documents).toEqual([
      { value: { a: 1 }, position: 1, count: 4 },
      { value: { b: 2 }, position: 3, count: 4 },
    ]);
  });

  it('keeps documents that are not mappings', () => {
    const documents = parseManifestDocuments('just text\n---\n- a\n- b\n', 'test.yaml');
    expect(documents.map((document) => document.value)).toEqual(['just text', ['a', 'b']]);
  });

  it('reads JSON as one document', () => {
    expect(parseManifestDocuments('[{"kind": "Pod"}]', 'test.json')).toEqual([{ value: [{ kind: 'Pod' }], position: 1, count: 1 }]);
  });

  it('returns nothing for empty input', () => {
    expect(parseManifestDocuments('', 'empty.yaml')).toEqual([]);
    expect(parseManifestDocuments('# only a comment\n', 'comment.yaml')).toEqual([]);
  });
});

describe('requireKubernetesObject', () => {
  it('returns an object with apiVersion and kind', () => {
    const object = { apiVersion: 'example.com/v1', kind: 'Widget', spec: 5 };
    expect(requireKubernetesObject(object, 'Document 1')).toBe(object);
  });

  it.each([
    ['text', 'just some text', /Document 1 is not a Kubernetes object: .*found the string "just some text"/],
    ['a list', ['a', 'b'], /Document 1 is not a Kubernetes object: .*found a list/],
    ['a number', 42, /found the number 42/],
    ['a long string', 'x'.repeat(100), /found the string "x{40}\.\.\."\. Pass only/],
    ['no apiVersion', { kind: 'Pod', spec: 5 }, /Document 1 is not a Kubernetes object: apiVersion is missing\. Set apiVersion and kind/],
    ['no kind', { apiVersion: 'v1' }, /kind is missing/],
    ['a numeric apiVersion', { apiVersion: 1, kind: 'Pod' }, /apiVersion is the number 1 instead of a string/],
    ['an empty kind', { apiVersion: 'v1', kind: '' }, /kind is empty/],
    ['neither field', {}, /apiVersion is missing and kind is missing/],
  ])('rejects %s', (_case, value, message) => {
    expect(() => requireKubernetesObject(value, 'Document 1')).toThrow(message);
  });
});

describe('formatManifests', () => {
  it('quotes strings that YAML 1.1 reads as other types', () => {
    const text = formatManifests([{ values: ['yes', 'on', 'y', '0644', 'true', '123', '2024-01-01', 'plain'] }]);
    expect(text).toBe('values:\n  - "yes"\n  - "on"\n  - "y"\n  - "0644"\n  - "true"\n  - "123"\n  - "2024-01-01"\n  - plain\n');
  });

  it('separates documents and writes no anchors', () => {
    const shared = { k: 1 };
    const text = formatManifests([{ a: shared, b: shared }, { c: 2 }]);
    expect(text).toBe('a:\n  k: 1\nb:\n  k: 1\n---\nc: 2\n');
  });

  it('does not fold long strings', () => {
    const long = `${'word '.repeat(40)}end`;
    expect(formatManifests([{ long }])).toBe(`long: ${long}\n`);
  });

  it('round-trips through parseManifests', () => {
    const documents = [{ kind: 'Pod', metadata: { annotations: { json: '{"a":[1]}', flag: 'true' } }, spec: { mode: 420 } }];
    expect(parseManifests(formatManifests(documents), 'round-trip')).toEqual(documents);
  });
});

describe('findPodTemplates', () => {
  function pathsOf(object: KubeObject): string[] {
    return findPodTemplates(object).map((location) => `${location.owner} ${location.path}`);
  }

  it.each([
    ['apps/v1', 'Deployment'],
    ['apps/v1', 'StatefulSet'],
    ['apps/v1', 'DaemonSet'],
    ['apps/v1', 'ReplicaSet'],
    ['batch/v1', 'Job'],
  ])('finds spec.template of %s %s', (apiVersion, kind) => {
    const object = { apiVersion, kind, metadata: { name: 'x' }, spec: { template: { spec: podSpec } } };
    expect(pathsOf(object)).toEqual([`${kind}/x spec.template`]);
  });

  it('finds the job template of a CronJob', () => {
    const object = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'nightly' }, spec: { jobTemplate: { spec: { template: { spec: podSpec } } } } };
    const [location] = findPodTemplates(object);
    expect(location?.path).toBe('spec.jobTemplate.spec.template');
    expect(location?.read().spec).toBe(podSpec);
  });

  it('treats a Pod as its own template', () => {
    const object: KubeObject = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'ns' }, spec: podSpec };
    const [location] = findPodTemplates(object);
    expect(location?.namespace).toBe('ns');
    location?.write({ metadata: { name: 'p', labels: { a: 'b' } }, spec: { containers: [] } });
    expect(object).toEqual({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { a: 'b' } }, spec: { containers: [] } });
  });

  it('finds templates in List items', () => {
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm' } },
        { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { template: { spec: podSpec } } },
      ],
    };
    expect(pathsOf(list)).toEqual(['List item 1 Deployment/d spec.template']);
  });

  it('rejects a List item that is not an object', () => {
    const list = { apiVersion: 'v1', kind: 'List', metadata: { name: 'all' }, items: [{ apiVersion: 'v1', kind: 'ConfigMap' }, 'text'] };
    expect(() => findPodTemplates(list)).toThrow(/Item 1 of List\/all is not a Kubernetes object: .*found the string "text"/);
  });

  it('rejects a List item without apiVersion', () => {
    const list = { apiVersion: 'v1', kind: 'List', items: [{ kind: 'Pod', spec: 5 }] };
    expect(() => findPodTemplates(list)).toThrow(/Item 0 of List\/\(unnamed\) is not a Kubernetes object: apiVersion is missing/);
  });

  it('rejects List items that are not a list', () => {
    const list = { apiVersion: 'v1', kind: 'List', metadata: { name: 'all' }, items: { a: 1 } };
    expect(() => findPodTemplates(list)).toThrow(/Invalid List\/all: items is a mapping, expected a list of objects/);
  });

  it('accepts a List without items', () => {
    expect(pathsOf({ apiVersion: 'v1', kind: 'List', items: null })).toEqual([]);
  });

  it('passes other kinds and groups through', () => {
    expect(pathsOf({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm' } })).toEqual([]);
    expect(pathsOf({ apiVersion: 'batch.volcano.sh/v1alpha1', kind: 'Job', metadata: { name: 'vj' }, spec: { tasks: [] } })).toEqual([]);
  });

  it('rejects a workload without a template', () => {
    const object = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: {} };
    expect(() => findPodTemplates(object)[0]?.read()).toThrow(/Invalid Deployment\/d: spec.template is missing/);
  });

  it('rejects a template without containers', () => {
    const object = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'd' }, spec: { template: { spec: { containers: [] } } } };
    expect(() => findPodTemplates(object)[0]?.read()).toThrow(/spec.template.spec.containers must be a non-empty list/);
  });
});
