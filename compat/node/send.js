#!/usr/bin/env node
// Sends the scenario with a real Node client, the way a user of it would.
//
// Usage: node send.js segment|rudder SCENARIO_JSON HOST WRITE_KEY
//
// `segment` is @segment/analytics-node, `rudder` is @rudderstack/rudder-sdk-node; both come from
// compat/.deps/node/node_modules (on NODE_PATH). Each client keeps its defaults (batching, and
// for the RudderStack SDK gzip) except the host, then is flushed and closed. Any delivery error
// fails the run.
'use strict'

const fs = require('fs')
const path = require('path')

const [flavour, scenarioFile, host, writeKey] = process.argv.slice(2)

function fill(value, sdk) {
  if (typeof value === 'string') return value.split('{sdk}').join(sdk)
  if (Array.isArray(value)) return value.map((item) => fill(item, sdk))
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, fill(item, sdk)]))
  }
  return value
}

// The installed version, from the package's own package.json.
function versionOf(name) {
  for (let dir = path.dirname(require.resolve(name)); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json')
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8'))
      if (pkg.name === name) return pkg.version
    }
  }
  return 'unknown'
}

// Sends every call; returns the list of errors the client reported.
async function run(client, scenario, flush) {
  const errors = []
  const pending = []
  const { user_id: userId, previous_id: previousId } = scenario
  for (const call of scenario.calls) {
    const ids = call.as_previous_id ? { anonymousId: previousId } : { userId }
    let message
    switch (call.type) {
      case 'identify':
        message = { ...ids, traits: call.traits }
        break
      case 'track':
        message = { ...ids, event: call.event, properties: call.properties }
        break
      case 'page':
      case 'screen':
        message = { ...ids, name: call.name, properties: call.properties }
        break
      case 'group':
        message = { ...ids, groupId: call.group_id, traits: call.traits }
        break
      case 'alias':
        message = { userId, previousId }
        break
      default:
        throw new Error(`unknown call ${call.type} in the scenario`)
    }
    pending.push(
      new Promise((resolve) => {
        client[call.type](message, (err) => {
          if (err) errors.push(`${call.type}: ${err.message || err}`)
          resolve()
        })
      }),
    )
  }
  await flush()
  await Promise.all(pending)
  return errors
}

async function main() {
  let sdk, name, client, flush
  if (flavour === 'segment') {
    sdk = 'node-segment'
    name = '@segment/analytics-node'
    const { Analytics } = require(name)
    client = new Analytics({ writeKey, host, maxRetries: 2 })
    client.on('error', (err) => console.error(`${sdk}: ${err.reason || err.message || JSON.stringify(err)}`))
    flush = () => client.closeAndFlush({ timeout: 30000 })
  } else if (flavour === 'rudder') {
    sdk = 'node-rudder'
    name = '@rudderstack/rudder-sdk-node'
    const Analytics = require(name)
    client = new Analytics(writeKey, { dataPlaneUrl: host, retryCount: 2, errorHandler: () => {} })
    flush = async () => {
      // Each flush() sends one batch (the first call of a new client went out on its own).
      while (client.queue.length > 0) await client.flush().catch(() => {})
    }
  } else {
    throw new Error(`unknown client ${flavour}: use segment or rudder`)
  }
  const scenario = fill(JSON.parse(fs.readFileSync(scenarioFile, 'utf8')), sdk)
  const version = versionOf(name)
  const errors = await run(client, scenario, flush)
  if (errors.length > 0) {
    console.error(`${sdk} ${version}: delivery failed: ${errors.join('; ')}`)
    process.exit(1)
  }
  console.log(`${sdk} ${version}: sent ${scenario.calls.length} calls`)
}

main().catch((err) => {
  console.error(`${flavour}: ${err.stack || err}`)
  process.exit(1)
})
