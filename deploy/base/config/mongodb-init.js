// Initiates the MongoDB replica set once and keeps one user per Promesa service, idempotently.
//
// Run by the mongodb-init Job as `mongosh --nodb mongodb-init.js`; every input comes from the
// environment (see deploy/base/mongodb.yaml). Safe to run again at any time: an initiated set
// is left alone and existing users get their password and roles set again, which is how a
// rotated password reaches MongoDB.
'use strict';

const SERVICES = ['contacts', 'interactions', 'followup'];
const WAIT_MS = 10 * 60 * 1000;
const PAUSE_MS = 2000;
const NOT_YET_INITIALIZED = 94;

function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const replicaSet = required('MONGODB_REPLICA_SET');
const members = required('MONGODB_MEMBERS')
  .split(',')
  .map((host) => host.trim())
  .filter((host) => host.length > 0);
const rootCredentials =
  `${encodeURIComponent(required('MONGODB_ROOT_USERNAME'))}:` +
  `${encodeURIComponent(required('MONGODB_ROOT_PASSWORD'))}`;

// Retries `attempt` until it returns something truthy or the wait is over.
function waitFor(what, attempt) {
  const deadline = Date.now() + WAIT_MS;
  let last = 'no answer yet';
  for (;;) {
    try {
      const result = attempt();
      if (result) {
        return result;
      }
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}: ${last}`);
    }
    sleep(PAUSE_MS);
  }
}

function adminDb(hosts, options) {
  const uri = `mongodb://${rootCredentials}@${hosts}/admin?authSource=admin&${options}`;
  return new Mongo(uri).getDB('admin');
}

// mongosh throws on a failed command; turn both shapes into one reply document.
function command(db, body) {
  try {
    return db.runCommand(body);
  } catch (error) {
    return { ok: 0, code: error.code, errmsg: error.message };
  }
}

function initiateOnce() {
  const first = adminDb(members[0], 'directConnection=true');
  const status = command(first, { replSetGetStatus: 1 });
  if (status.ok === 1) {
    print(`replica set ${status.set} is already initiated`);
    return;
  }
  if (status.code !== NOT_YET_INITIALIZED) {
    throw new Error(`replSetGetStatus failed: ${status.errmsg}`);
  }
  const config = {
    _id: replicaSet,
    members: members.map((host, index) => ({ _id: index, host })),
  };
  const reply = command(first, { replSetInitiate: config });
  if (reply.ok !== 1) {
    throw new Error(`replSetInitiate failed: ${reply.errmsg}`);
  }
  print(`replica set ${replicaSet} initiated with ${members.join(', ')}`);
}

function ensureServiceUsers(admin) {
  for (const service of SERVICES) {
    const prefix = service.toUpperCase();
    const pwd = required(`${prefix}_MONGODB_PASSWORD`);
    const roles = [{ role: 'readWrite', db: required(`${prefix}_MONGODB_DATABASE`) }];
    if (admin.getUser(service)) {
      admin.updateUser(service, { pwd, roles }, { w: 'majority' });
      print(`user ${service} updated`);
    } else {
      admin.createUser({ user: service, pwd, roles }, { w: 'majority' });
      print(`user ${service} created`);
    }
  }
}

try {
  for (const host of members) {
    waitFor(`${host} to answer`, () => {
      const reply = command(adminDb(host, 'directConnection=true'), { ping: 1 });
      if (reply.ok !== 1) {
        throw new Error(reply.errmsg);
      }
      return true;
    });
  }
  initiateOnce();
  const primary = waitFor('a primary', () => {
    const admin = adminDb(members.join(','), `replicaSet=${replicaSet}`);
    return admin.hello().isWritablePrimary ? admin : null;
  });
  ensureServiceUsers(primary);
  print('mongodb-init done');
} catch (error) {
  print(`mongodb-init failed: ${error.message}`);
  quit(1);
}
