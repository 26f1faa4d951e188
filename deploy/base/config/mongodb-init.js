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

// Runs `use` with the admin database of `hosts`, authenticated as root, then disconnects.
function withAdmin(settings, hosts, options, use) {
  const uri = `mongodb://${settings.rootCredentials}@${hosts}/admin?authSource=admin&${options}`;
  const connection = new Mongo(uri);
  try {
    return use(connection.getDB('admin'));
  } finally {
    connection.close();
  }
}

// mongosh throws on a failed command; turn both shapes into one reply document.
function command(db, body) {
  try {
    return db.runCommand(body);
  } catch (error) {
    return { ok: 0, code: error.code, errmsg: error.message };
  }
}

function readSettings() {
  return {
    replicaSet: required('MONGODB_REPLICA_SET'),
    members: required('MONGODB_MEMBERS')
      .split(',')
      .map((host) => host.trim())
      .filter((host) => host.length > 0),
    rootCredentials:
      `${encodeURIComponent(required('MONGODB_ROOT_USERNAME'))}:` +
      `${encodeURIComponent(required('MONGODB_ROOT_PASSWORD'))}`,
    users: SERVICES.map((service) => ({
      user: service,
      pwd: required(`${service.toUpperCase()}_MONGODB_PASSWORD`),
      roles: [{ role: 'readWrite', db: required(`${service.toUpperCase()}_MONGODB_DATABASE`) }],
    })),
  };
}

function initiateOnce(settings, admin) {
  const status = command(admin, { replSetGetStatus: 1 });
  if (status.ok === 1) {
    print(`replica set ${status.set} is already initiated`);
    return;
  }
  if (status.code !== NOT_YET_INITIALIZED) {
    throw new Error(`replSetGetStatus failed: ${status.errmsg}`);
  }
  const config = {
    _id: settings.replicaSet,
    members: settings.members.map((host, index) => ({ _id: index, host })),
  };
  const reply = command(admin, { replSetInitiate: config });
  if (reply.ok !== 1) {
    throw new Error(`replSetInitiate failed: ${reply.errmsg}`);
  }
  print(`replica set ${settings.replicaSet} initiated with ${settings.members.join(', ')}`);
}

function ensureUsers(settings, admin) {
  for (const { user, pwd, roles } of settings.users) {
    if (admin.getUser(user)) {
      admin.updateUser(user, { pwd, roles }, { w: 'majority' });
      print(`user ${user} updated`);
    } else {
      admin.createUser({ user, pwd, roles }, { w: 'majority' });
      print(`user ${user} created`);
    }
  }
}

function main() {
  const settings = readSettings();
  const direct = 'directConnection=true';
  const replicaSet = `replicaSet=${settings.replicaSet}`;
  const allMembers = settings.members.join(',');

  // Every member must be up before the set can be initiated with all of them.
  for (const host of settings.members) {
    waitFor(`${host} to answer`, () =>
      withAdmin(settings, host, direct, (admin) => {
        const reply = command(admin, { ping: 1 });
        if (reply.ok !== 1) {
          throw new Error(reply.errmsg);
        }
        return true;
      }),
    );
  }
  withAdmin(settings, settings.members[0], direct, (admin) => initiateOnce(settings, admin));
  waitFor('a primary', () =>
    withAdmin(settings, allMembers, replicaSet, (admin) => admin.hello().isWritablePrimary),
  );
  withAdmin(settings, allMembers, replicaSet, (admin) => ensureUsers(settings, admin));
  print('mongodb-init done');
}

try {
  main();
} catch (error) {
  print(`mongodb-init failed: ${error.message}`);
  quit(1);
}
