// End-to-end smoke test of the FHIR server with a JavaScript client (fhir-kit-client) over real HTTP.
//
//   node tests/e2e/js/smoke.mjs http://127.0.0.1:8080/fhir
//
// Runs create / read / update / search with paging over `next` links / JSON Patch / transaction /
// delete, checks what a user would see, and exits non-zero on the first failure.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Client } from 'fhir-kit-client';

const SSIN = 'https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin';
const NIHDI_ORG = 'https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/nihdi-organization';

const base = process.argv[2];
if (!base) {
  console.error('usage: node smoke.mjs <FHIR base URL>');
  process.exit(2);
}
const client = new Client({ baseUrl: base });
const tag = randomUUID().replaceAll('-', '').slice(0, 12);
const steps = [];

async function step(name, fn) {
  try {
    await fn();
    steps.push(name);
    console.log(`ok   ${name}`);
  } catch (error) {
    const status = error?.response?.status;
    const body = error?.response?.data ? JSON.stringify(error.response.data).slice(0, 800) : '';
    console.error(`FAIL ${name}: ${error?.message ?? error}${status ? ` (HTTP ${status})` : ''}`);
    if (body) console.error(`     response body: ${body}`);
    process.exit(1);
  }
}

async function expectStatus(promise, status) {
  try {
    await promise;
  } catch (error) {
    assert.equal(error?.response?.status, status, `expected HTTP ${status}, got ${error?.message}`);
    return;
  }
  assert.fail(`expected HTTP ${status}, but the request succeeded`);
}

const lastPart = (location) => location.split('/_history/')[0].split('/').at(-1);

let patient;

await step('metadata', async () => {
  const statement = await client.capabilityStatement();
  assert.equal(statement.resourceType, 'CapabilityStatement');
  assert.equal(statement.fhirVersion, '4.0.1');
});

await step('create', async () => {
  patient = await client.create({
    resourceType: 'Patient',
    body: {
      resourceType: 'Patient',
      identifier: [{ system: SSIN, value: `ssin-${tag}` }],
      name: [{ family: `Smoke${tag}`, given: ['Eva'] }],
      gender: 'female',
      birthDate: '1994-04-14',
    },
  });
  assert.equal(patient.resourceType, 'Patient');
  assert.ok(patient.id, 'the created Patient has an id');
  assert.equal(patient.meta.versionId, '1');
});

await step('read', async () => {
  const read = await client.read({ resourceType: 'Patient', id: patient.id });
  assert.equal(read.id, patient.id);
  assert.equal(read.name[0].family, `Smoke${tag}`);
  assert.deepEqual(read.identifier, [{ system: SSIN, value: `ssin-${tag}` }]);
  assert.equal(read.birthDate, '1994-04-14');
  assert.equal(read.meta.versionId, '1');
});

await step('update', async () => {
  const body = { ...patient, gender: 'other', active: true };
  const updated = await client.update({ resourceType: 'Patient', id: patient.id, body });
  assert.equal(updated.id, patient.id);
  assert.equal(updated.meta.versionId, '2');
  const read = await client.read({ resourceType: 'Patient', id: patient.id });
  assert.equal(read.gender, 'other');
  assert.equal(read.active, true);
  assert.equal(read.meta.versionId, '2');
  const v1 = await client.vread({ resourceType: 'Patient', id: patient.id, version: '1' });
  assert.equal(v1.gender, 'female');
});

await step('patch (JSON Patch)', async () => {
  const patched = await client.patch({
    resourceType: 'Patient',
    id: patient.id,
    jsonPatch: [
      { op: 'test', path: '/gender', value: 'other' },
      { op: 'replace', path: '/gender', value: 'female' },
      { op: 'add', path: '/name/0/given/-', value: 'Sofie' },
      { op: 'remove', path: '/active' },
    ],
  });
  assert.equal(patched.meta.versionId, '3');
  const read = await client.read({ resourceType: 'Patient', id: patient.id });
  assert.equal(read.gender, 'female');
  assert.deepEqual(read.name[0].given, ['Eva', 'Sofie']);
  assert.equal(read.active, undefined);
  // a failing `test` operation changes nothing
  await expectStatus(
    client.patch({
      resourceType: 'Patient',
      id: patient.id,
      jsonPatch: [
        { op: 'test', path: '/gender', value: 'male' },
        { op: 'replace', path: '/gender', value: 'male' },
      ],
    }),
    422,
  );
  const after = await client.read({ resourceType: 'Patient', id: patient.id });
  assert.equal(after.meta.versionId, '3');
  assert.equal(after.gender, 'female');
});

await step('search with paging (next links)', async () => {
  const family = `Page${tag}`;
  const created = new Set();
  for (let i = 0; i < 12; i += 1) {
    const p = await client.create({
      resourceType: 'Patient',
      body: { resourceType: 'Patient', name: [{ family, given: [`K${i}`] }] },
    });
    created.add(p.id);
  }
  let bundle = await client.search({
    resourceType: 'Patient',
    searchParams: { family, _count: 5 },
  });
  assert.equal(bundle.resourceType, 'Bundle');
  assert.equal(bundle.type, 'searchset');
  const seen = [];
  let pages = 0;
  while (bundle) {
    pages += 1;
    assert.ok(pages <= 10, 'paging does not end');
    for (const entry of bundle.entry ?? []) {
      assert.equal(entry.search?.mode, 'match');
      seen.push(entry.resource.id);
    }
    bundle = await client.nextPage({ bundle });
  }
  assert.equal(pages, 3, 'twelve matches at _count=5 are three pages');
  assert.equal(seen.length, 12);
  assert.deepEqual(new Set(seen), created);
});

await step('transaction', async () => {
  const orgValue = `org-${tag}`;
  await client.create({
    resourceType: 'Organization',
    body: {
      resourceType: 'Organization',
      identifier: [{ system: NIHDI_ORG, value: orgValue }],
      name: 'CHU Saint-Pierre - Maternité',
    },
  });
  const patientUrn = `urn:uuid:${randomUUID()}`;
  const encounterUrn = `urn:uuid:${randomUUID()}`;
  const obsUrn = `urn:uuid:${randomUUID()}`;
  const response = await client.transaction({
    body: {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          fullUrl: patientUrn,
          resource: {
            resourceType: 'Patient',
            identifier: [{ system: SSIN, value: `tx-${tag}` }],
            name: [{ family: `Tx${tag}` }],
            managingOrganization: { reference: `Organization?identifier=${NIHDI_ORG}|${orgValue}` },
          },
          request: { method: 'POST', url: 'Patient', ifNoneExist: `identifier=${SSIN}|tx-${tag}` },
        },
        {
          fullUrl: encounterUrn,
          resource: {
            resourceType: 'Encounter',
            status: 'finished',
            class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'HH' },
            subject: { reference: patientUrn },
          },
          request: { method: 'POST', url: 'Encounter' },
        },
        {
          fullUrl: obsUrn,
          resource: {
            resourceType: 'Observation',
            status: 'final',
            code: { coding: [{ system: 'http://loinc.org', code: '8302-2', display: 'Body height' }] },
            subject: { reference: patientUrn },
            encounter: { reference: encounterUrn },
            valueQuantity: { value: 51, unit: 'cm', system: 'http://unitsofmeasure.org', code: 'cm' },
          },
          request: { method: 'POST', url: 'Observation' },
        },
      ],
    },
  });
  assert.equal(response.type, 'transaction-response');
  assert.equal(response.entry.length, 3);
  for (const entry of response.entry) {
    assert.match(entry.response.status, /^201/);
    assert.ok(entry.response.location, 'each created entry has a location');
  }
  const [patientId, encounterId, obsId] = response.entry.map((e) => lastPart(e.response.location));
  const obs = await client.read({ resourceType: 'Observation', id: obsId });
  assert.equal(obs.subject.reference, `Patient/${patientId}`);
  assert.equal(obs.encounter.reference, `Encounter/${encounterId}`);
  assert.equal(obs.valueQuantity.value, 51);
  const txPatient = await client.read({ resourceType: 'Patient', id: patientId });
  assert.match(txPatient.managingOrganization.reference, /^Organization\/[A-Za-z0-9\-.]+$/);
  const encounters = await client.search({
    resourceType: 'Encounter',
    searchParams: { subject: `Patient/${patientId}` },
  });
  assert.equal(encounters.entry.length, 1);
});

await step('delete', async () => {
  await client.delete({ resourceType: 'Patient', id: patient.id });
  await expectStatus(client.read({ resourceType: 'Patient', id: patient.id }), 410);
  await expectStatus(client.read({ resourceType: 'Patient', id: `missing-${tag}` }), 404);
});

console.log(`smoke: all ${steps.length} steps ok`);
