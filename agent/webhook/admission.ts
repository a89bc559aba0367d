/**
 * The AdmissionReview exchange of `admission.k8s.io/v1`: parsing a request body and building the
 * response body. Only the fields the webhook reads are typed.
 */
import { InjectError } from '../inject/errors.js';
import { isRecord, requireKubernetesObject, type KubeObject } from '../inject/k8s.js';
import { mutatePod, type PodMutationOptions } from './mutate.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
export const ADMISSION_KIND = 'AdmissionReview';

interface GroupVersionKind {
  group?: string;
  version?: string;
  kind?: string;
}

export interface AdmissionRequest {
  uid: string;
  kind?: GroupVersionKind;
  subResource?: string;
  namespace?: string;
  operation?: string;
  object?: unknown;
  dryRun?: boolean;
}

/** `metav1.Status` as the API server reads it from a rejection or an error body. */
export interface StatusResult {
  code: number;
  message: string;
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  /** Base64 of the JSON Patch array. */
  patch?: string;
  warnings?: string[];
  status?: StatusResult;
}

/** Fields of one review for the request log. Never the pod itself, which may hold secrets in env. */
export interface ReviewLogFields {
  uid?: string;
  namespace?: string;
  pod?: string;
  operation?: string;
  decision: string;
  [field: string]: unknown;
}

/** Reply for the HTTP layer: the status code, the JSON body and the fields to log. */
export interface ReviewOutcome {
  httpStatus: number;
  body: unknown;
  log: ReviewLogFields;
}

type ParsedReview = { ok: true; request: AdmissionRequest } | { ok: false; uid?: string; message: string };

const FIX_VERSION = `Send an ${ADMISSION_API_VERSION} ${ADMISSION_KIND}, as the API server does with admissionReviewVersions: [v1].`;

/** Returns a `metav1.Status` body for an HTTP error, which the API server includes in its own error. */
export function statusBody(code: number, message: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Status', status: 'Failure', message, code };
}

function reviewBody(response: AdmissionResponse): Record<string, unknown> {
  return { apiVersion: ADMISSION_API_VERSION, kind: ADMISSION_KIND, response };
}

function parseReview(text: string): ParsedReview {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, message: `Invalid AdmissionReview: the request body is not JSON (${(error as Error).message}). ${FIX_VERSION}` };
  }
  if (!isRecord(value)) {
    return { ok: false, message: `Invalid AdmissionReview: the request body is JSON but not an object. ${FIX_VERSION}` };
  }

  const request = isRecord(value.request) ? value.request : undefined;
  const uid = typeof request?.uid === 'string' && request.uid !== '' ? request.uid : undefined;
  if (value.apiVersion !== ADMISSION_API_VERSION || value.kind !== ADMISSION_KIND) {
    return {
      ok: false,
      uid,
      message: `Invalid AdmissionReview: apiVersion ${JSON.stringify(value.apiVersion)} and kind ${JSON.stringify(value.kind)}, expected ${ADMISSION_API_VERSION} and ${ADMISSION_KIND}. ${FIX_VERSION}`,
    };
  }
  if (request === undefined) {
    return { ok: false, message: `Invalid AdmissionReview: request is missing or not an object. ${FIX_VERSION}` };
  }
  if (uid === undefined) {
    return { ok: false, message: `Invalid AdmissionReview: request.uid is missing or empty. ${FIX_VERSION}` };
  }
  return { ok: true, request: request as unknown as AdmissionRequest };
}

function isPodCreate(request: AdmissionRequest): boolean {
  const kind = isRecord(request.kind) ? request.kind : {};
  return (kind.group ?? '') === '' && kind.kind === 'Pod' && (request.subResource ?? '') === '' && request.operation === 'CREATE';
}

function podNameOf(object: KubeObject): string | undefined {
  const metadata = isRecord(object.metadata) ? object.metadata : {};
  for (const field of ['name', 'generateName']) {
    if (typeof metadata[field] === 'string' && metadata[field] !== '') {
      return metadata[field];
    }
  }
  return undefined;
}

function reject(uid: string, code: number, message: string, log: ReviewLogFields): ReviewOutcome {
  return { httpStatus: 200, body: reviewBody({ uid, allowed: false, status: { code, message } }), log: { ...log, message } };
}

/**
 * Reviews one request body and returns the response. Pods created in a namespace get tandem
 * through mutatePod. Other kinds, operations and subresources are allowed unchanged, in case the
 * webhook configuration sends more than pod creations. A body that is no AdmissionReview gets HTTP
 * 400, or a rejection when its uid is known, because the API server matches responses by uid.
 */
export async function reviewAdmission(text: string, options: PodMutationOptions): Promise<ReviewOutcome> {
  const parsed = parseReview(text);
  if (!parsed.ok) {
    const log = { uid: parsed.uid, decision: 'invalid', message: parsed.message };
    if (parsed.uid !== undefined) {
      return reject(parsed.uid, 400, parsed.message, log);
    }
    return { httpStatus: 400, body: statusBody(400, parsed.message), log };
  }

  const { request } = parsed;
  const log: ReviewLogFields = { uid: request.uid, namespace: request.namespace, operation: request.operation, decision: 'skipped' };
  if (!isPodCreate(request)) {
    const kind = isRecord(request.kind) ? `${request.kind.group || 'core'}/${request.kind.version}/${request.kind.kind}` : 'unknown kind';
    return { httpStatus: 200, body: reviewBody({ uid: request.uid, allowed: true }), log: { ...log, kind, subResource: request.subResource } };
  }

  const namespace = typeof request.namespace === 'string' && request.namespace !== '' ? request.namespace : undefined;
  if (namespace === undefined) {
    return reject(request.uid, 400, 'Invalid AdmissionReview: request.namespace is missing for a Pod, which is namespaced. Send the namespace of the pod.', {
      ...log,
      decision: 'invalid',
    });
  }

  let pod: KubeObject;
  try {
    pod = requireKubernetesObject(request.object, 'request.object of the AdmissionReview');
  } catch (error) {
    if (!(error instanceof InjectError)) {
      throw error;
    }
    return reject(request.uid, 400, `Invalid AdmissionReview: ${error.message}`, { ...log, decision: 'invalid' });
  }
  log.pod = podNameOf(pod);

  try {
    const mutation = await mutatePod(pod, namespace, options);
    const response: AdmissionResponse = { uid: request.uid, allowed: true };
    if (mutation.patch.length > 0) {
      response.patchType = 'JSONPatch';
      response.patch = Buffer.from(JSON.stringify(mutation.patch)).toString('base64');
    }
    if (mutation.warnings.length > 0) {
      response.warnings = mutation.warnings;
    }

    const details =
      mutation.decision === 'injected' || mutation.decision === 'reinjected'
        ? {
            containers: mutation.containers.map(({ name, role, priority }) => ({ name, role, priority })),
            imageConfigSources: mutation.imageConfigSources,
            addedContainers: mutation.decision === 'reinjected' ? mutation.addedContainers : undefined,
            patchOperations: mutation.patch.length,
            warnings: mutation.warnings.length > 0 ? mutation.warnings : undefined,
          }
        : {};
    return { httpStatus: 200, body: reviewBody(response), log: { ...log, decision: mutation.decision, dryRun: request.dryRun === true, ...details } };
  } catch (error) {
    if (!(error instanceof InjectError)) {
      throw error;
    }
    return reject(request.uid, 400, error.message, { ...log, decision: 'rejected' });
  }
}
