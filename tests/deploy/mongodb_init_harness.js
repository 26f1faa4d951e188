// Runs deploy/base/config/mongodb-init.js against an in-memory stand-in for mongosh, so the
// init step's logic is exercised without MongoDB.
//
// usage: node mongodb_init_harness.js SCRIPT SCENARIO
//   SCENARIO: fresh (nothing initiated, no users), initiated (set up, user contacts exists),
//   unreachable (mongodb-1 never answers).
// The script's environment is this process's environment. Prints one JSON report on stdout.
'use strict';

const fs = require('fs');
const vm = require('vm');

const [scriptPath, scenario] = process.argv.slice(2);
const NOT_YET_INITIALIZED = 94;

const state = {
  initiated: scenario === 'initiated',
  config: null,
  users: new Set(scenario === 'initiated' ? ['contacts'] : []),
  connections: [],
  closed: 0,
  userCalls: [],
  output: [],
  exitCode: 0,
};

// The script's clock only moves when it sleeps, so a wait that never ends finishes at once.
let now = 0;
const fakeDate = { now: () => now };

class FakeDb {
  constructor(uri) {
    this.uri = uri;
  }

  runCommand(body) {
    if ('ping' in body) {
      if (scenario === 'unreachable' && this.uri.includes('mongodb-1.')) {
        throw new Error('connect ECONNREFUSED');
      }
      return { ok: 1 };
    }
    if ('replSetGetStatus' in body) {
      if (state.initiated) {
        return { ok: 1, set: 'rs0' };
      }
      const error = new Error('no replset config has been received');
      error.code = NOT_YET_INITIALIZED;
      throw error;
    }
    if ('replSetInitiate' in body) {
      state.initiated = true;
      state.config = body.replSetInitiate;
      return { ok: 1 };
    }
    throw new Error(`unexpected command ${JSON.stringify(body)}`);
  }

  hello() {
    return { isWritablePrimary: state.initiated };
  }

  getUser(name) {
    return state.users.has(name) ? { user: name } : null;
  }

  createUser(doc, writeConcern) {
    state.users.add(doc.user);
    state.userCalls.push({ call: 'create', user: doc.user, roles: doc.roles, writeConcern });
  }

  updateUser(name, doc, writeConcern) {
    state.userCalls.push({ call: 'update', user: name, roles: doc.roles, writeConcern });
  }
}

class Mongo {
  constructor(uri) {
    state.connections.push(uri);
    this.uri = uri;
  }

  getDB() {
    return new FakeDb(this.uri);
  }

  close() {
    state.closed += 1;
  }
}

const QUIT = Symbol('quit');
const context = vm.createContext({
  process: { env: { ...process.env } },
  Mongo,
  Date: fakeDate,
  Error,
  JSON,
  encodeURIComponent,
  print: (...parts) => state.output.push(parts.join(' ')),
  sleep: (ms) => {
    now += ms;
  },
  quit: (code) => {
    state.exitCode = code;
    throw QUIT;
  },
});

try {
  vm.runInContext(fs.readFileSync(scriptPath, 'utf8'), context, { filename: scriptPath });
} catch (error) {
  if (error !== QUIT) {
    state.output.push(`uncaught: ${error && error.stack}`);
    state.exitCode = 2;
  }
}

process.stdout.write(
  JSON.stringify({
    exitCode: state.exitCode,
    output: state.output,
    config: state.config,
    connections: state.connections,
    closed: state.closed,
    userCalls: state.userCalls,
  }),
);
