#!/usr/bin/env node
// Helia reference peer for the interop tests.
//
// Protocol: one JSON object per line.
//   stdout, once at startup: {"event":"ready","peerId":...,"addrs":[".../p2p/<id>"]}
//   stdin:  {"id":..., "cmd":"<name>", ...args}
//   stdout: {"id":..., "ok":true, ...result} | {"id":..., "ok":false, "error":"..."}
// Commands run concurrently; match answers by "id". Logs go to stderr only
// (set DEBUG=libp2p:*,helia:* for libp2p/helia internals).
// Exits 0 on {"cmd":"stop"}, stdin EOF, SIGTERM or SIGINT.
// Optional argv: --listen <multiaddr> (default /ip4/127.0.0.1/tcp/0).
//
// Add a command: write `async function (msg) -> object` and register it in `commands`.

import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { gossipsub } from '@libp2p/gossipsub'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { CID } from 'multiformats/cid'

const { values: argv } = parseArgs({
  options: { listen: { type: 'string', default: '/ip4/127.0.0.1/tcp/0' } }
})

const log = (...args) => process.stderr.write(`[helia-peer ${process.pid}] ${args.join(' ')}\n`)
const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// ---- node -------------------------------------------------------------------

const helia = withBitswap(withLibp2pLight(createHeliaLight({
  blockstore: new MemoryBlockstore(),
  datastore: new MemoryDatastore()
}), {
  addresses: { listen: [argv.listen] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  peerDiscovery: [], // no bootstrap / mdns: tests dial explicitly
  services: {
    identify: identify(),
    identifyPush: identifyPush(),
    ping: ping(), // libp2p's connection monitor pings every 10 s; also required by kad-dht
    dht: kadDHT({
      clientMode: false, // server mode from the start (no public address will ever appear)
      peerInfoMapper: passthroughMapper, // default mapper strips 127.0.0.1
      allowQueryWithZeroPeers: true
    }),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
  }
}))
const fs = unixfs(helia)
const inbox = {} // topic -> received pubsub messages

await helia.start()
const libp2p = helia.libp2p
libp2p.services.pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  inbox[msg.topic]?.push({ from: msg.from?.toString(), data: new TextDecoder().decode(msg.data) })
})

// ---- helpers ----------------------------------------------------------------

const str = (bytes) => (bytes == null ? null : new TextDecoder().decode(bytes))

async function peerRecord (peerId) {
  try {
    return await libp2p.peerStore.get(peerId)
  } catch (err) {
    if (err.name === 'NotFoundError') return null
    throw err
  }
}

// PeerId object for a string id: from open connections, else from the peer store
async function findPeerId (s) {
  const conn = libp2p.getConnections().find((c) => c.remotePeer.toString() === s)
  if (conn != null) return conn.remotePeer
  const known = await libp2p.peerStore.all({ filters: [(p) => p.id.toString() === s] })
  return known[0]?.id ?? null
}

function importerOptions (msg) {
  const opts = {}
  if (msg.rawLeaves != null) opts.rawLeaves = Boolean(msg.rawLeaves)
  if (msg.cidVersion != null) opts.cidVersion = Number(msg.cidVersion)
  if (msg.chunkSize != null) opts.chunker = fixedSize({ chunkSize: Number(msg.chunkSize) })
  if (msg.maxChildrenPerNode != null) opts.layout = balanced({ maxChildrenPerNode: Number(msg.maxChildrenPerNode) })
  if (msg.reduceSingleLeafToSelf != null) opts.reduceSingleLeafToSelf = Boolean(msg.reduceSingleLeafToSelf)
  return opts
}

// ---- commands ---------------------------------------------------------------

const commands = {
  async dial ({ addr }) {
    const conn = await libp2p.dial(multiaddr(addr), { signal: AbortSignal.timeout(10_000) })
    return { peerId: conn.remotePeer.toString(), remoteAddr: conn.remoteAddr.toString() }
  },

  async peers () {
    const byPeer = new Map()
    for (const conn of libp2p.getConnections()) {
      const key = conn.remotePeer.toString()
      if (!byPeer.has(key)) byPeer.set(key, { id: conn.remotePeer, addrs: [] })
      byPeer.get(key).addrs.push(conn.remoteAddr.toString())
    }
    const peers = []
    for (const [peerId, { id, addrs }] of byPeer) {
      const rec = await peerRecord(id)
      peers.push({
        peerId,
        addrs,
        listenAddrs: rec?.addresses.map((a) => a.multiaddr.toString()) ?? [],
        agentVersion: str(rec?.metadata.get('AgentVersion')),
        protocols: rec?.protocols ?? []
      })
    }
    return { peers }
  },

  async agent ({ peerId, timeoutMs = 5000 }) {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const id = await findPeerId(peerId)
      const rec = id == null ? null : await peerRecord(id)
      const agentVersion = str(rec?.metadata.get('AgentVersion'))
      if (agentVersion != null) {
        return { agentVersion, protocolVersion: str(rec.metadata.get('ProtocolVersion')), protocols: rec.protocols }
      }
      if (Date.now() > deadline) throw new Error(`no identify data for ${peerId} after ${timeoutMs} ms`)
      await sleep(50)
    }
  },

  async add ({ path, ...msg }) {
    const cid = await fs.addByteStream(createReadStream(path), importerOptions(msg))
    return { cid: cid.toString() }
  },

  async cat ({ cid, out, timeoutMs = 30_000 }) {
    const hash = createHash('sha256')
    const file = createWriteStream(out)
    let bytes = 0
    try {
      for await (const chunk of fs.cat(CID.parse(cid), { signal: AbortSignal.timeout(timeoutMs) })) {
        hash.update(chunk)
        bytes += chunk.byteLength
        if (!file.write(chunk)) await once(file, 'drain')
      }
    } finally {
      file.end()
      await once(file, 'close')
    }
    return { bytes, sha256: hash.digest('hex') }
  },

  async provide ({ cid, timeoutMs = 10_000 }) {
    await libp2p.contentRouting.provide(CID.parse(cid), { signal: AbortSignal.timeout(timeoutMs) })
    return {}
  },

  async findProviders ({ cid, timeoutMs = 10_000 }) {
    const found = new Set()
    try {
      for await (const p of libp2p.contentRouting.findProviders(CID.parse(cid), { signal: AbortSignal.timeout(timeoutMs) })) {
        found.add(p.id.toString())
      }
    } catch (err) {
      if (found.size === 0 && err.name !== 'AbortError' && err.name !== 'TimeoutError') throw err
    }
    return { providers: [...found] }
  },

  async subscribe ({ topic }) {
    inbox[topic] ??= []
    libp2p.services.pubsub.subscribe(topic)
    return {}
  },

  async messages ({ topic }) {
    return { messages: (inbox[topic] ?? []).map((m) => ({ from: m.from, data: m.data })) }
  },

  async publish ({ topic, data }) {
    const result = await libp2p.services.pubsub.publish(topic, new TextEncoder().encode(data))
    return { recipients: (result?.recipients ?? []).map(String) }
  },

  async topicPeers ({ topic }) {
    return { peers: libp2p.services.pubsub.getSubscribers(topic).map(String) }
  },

  async stop () {
    setImmediate(() => shutdown('stop command'))
    return {}
  }
}

// ---- plumbing ---------------------------------------------------------------

async function handle (line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    send({ id: null, ok: false, error: `bad JSON: ${err.message}` })
    return
  }
  const { id = null, cmd, ...args } = msg
  const fn = Object.hasOwn(commands, cmd) ? commands[cmd] : null
  if (fn == null) {
    send({ id, ok: false, error: `unknown command: ${cmd}` })
    return
  }
  const started = Date.now()
  try {
    const result = await fn(args)
    send({ id, ok: true, ...result })
    log(`${cmd} #${id} ok in ${Date.now() - started} ms`)
  } catch (err) {
    log(`${cmd} #${id} failed: ${err.stack ?? err}`)
    send({ id, ok: false, error: `${err.name ?? 'Error'}: ${err.message ?? err}` })
  }
}

let stopping = false
async function shutdown (reason, code = 0) {
  if (stopping) return
  stopping = true
  log(`stopping (${reason})`)
  const guard = setTimeout(() => { log('stop timed out'); process.exit(code || 1) }, 5000)
  try {
    await helia.stop()
  } catch (err) {
    log(`error while stopping: ${err.stack ?? err}`)
  }
  clearTimeout(guard)
  process.exit(code)
}

process.on('SIGTERM', () => shutdown('SIGTERM'))
process.on('SIGINT', () => shutdown('SIGINT'))
process.on('unhandledRejection', (err) => log(`unhandled rejection: ${err?.stack ?? err}`))

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity })
rl.on('line', (line) => { if (line.trim() !== '') handle(line) })
rl.on('close', () => shutdown('stdin closed'))

const addrs = libp2p.getMultiaddrs().map((a) => a.toString())
log(`started ${libp2p.peerId} listening on ${addrs.join(' ')}`)
send({ event: 'ready', peerId: libp2p.peerId.toString(), addrs })
