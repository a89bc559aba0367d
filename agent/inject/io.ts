import { readFile } from 'node:fs/promises';
import { Document, parseAllDocuments, type Tags } from 'yaml';
import { InjectError } from './errors.js';

/**
 * Reads a manifest file, or standard input when `file` is `-`.
 */
export async function readManifestText(file: string): Promise<string> {
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) {
      chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new InjectError(`Cannot read ${file}: ${(error as Error).message}.`);
  }
}

// kubectl reads YAML 1.1 (octal `0644`, `yes`/`on` booleans) but keeps timestamps as strings, so
// the timestamp tag is the one 1.1 type left out.
function withoutTimestamp(tags: Tags): Tags {
  return tags.filter((tag) => typeof tag !== 'object' || tag.tag !== 'tag:yaml.org,2002:timestamp');
}

// Copies arrays and plain objects node by node. structuredClone would keep two references to one
// aliased node pointing at one copy, so editing one container would edit the other.
function copyTree(value: unknown): unknown {
  if (Array.isArray(value)) {
    return value.map(copyTree);
  }
  if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, entry]) => [key, copyTree(entry)]));
  }
  return value;
}

/** One document of a manifest stream, with its place in the stream for messages. */
export interface ManifestDocument {
  value: unknown;
  /** Position in the stream, counting from 1. Empty documents are counted, so it matches what a reader counts. */
  position: number;
  /** Number of documents in the stream, empty ones included. */
  count: number;
}

/**
 * Parses every document of a YAML stream or a JSON text, which is one document. Empty documents,
 * such as the one after a trailing `---`, are dropped. Each document is a deep copy with no shared
 * nodes, so YAML aliases never tie two objects together.
 */
export function parseManifestDocuments(text: string, source: string): ManifestDocument[] {
  const trimmed = text.trimStart();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return [{ value: JSON.parse(text) as unknown, position: 1, count: 1 }];
    } catch {
      // Flow-style YAML also starts with a bracket, so the YAML parser gets the next try.
    }
  }

  const documents = parseAllDocuments(text, { version: '1.1', customTags: withoutTimestamp, prettyErrors: true });
  const parsed: ManifestDocument[] = [];
  documents.forEach((document, index) => {
    const [error] = document.errors;
    if (error) {
      throw new InjectError(`Invalid YAML in ${source}: ${error.message}`);
    }
    const value: unknown = document.toJS({ maxAliasCount: -1 });
    if (value !== null && value !== undefined) {
      parsed.push({ value: copyTree(value), position: index + 1, count: documents.length });
    }
  });
  return parsed;
}

/** Parses a YAML stream or a JSON text as parseManifestDocuments does, and returns the values alone. */
export function parseManifests(text: string, source: string): unknown[] {
  return parseManifestDocuments(text, source).map((document) => document.value);
}

/**
 * Writes documents as one YAML stream. Strings that YAML 1.1 would read as another type (`yes`,
 * `0644`, `2024-01-01`) are quoted, long strings are not folded, and no anchors or aliases appear.
 */
export function formatManifests(values: readonly unknown[]): string {
  return values
    .map((value) => new Document(value, { version: '1.1', aliasDuplicateObjects: false }).toString({ lineWidth: 0 }))
    .join('---\n');
}
