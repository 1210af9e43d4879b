// Health check of the mongo service in compose.yaml, which also initiates the replica set: the
// first run finds a node that is not yet a member of any set and makes it a single-node set rs0.
// The check passes once this node is the writable primary, so the servers start only then.
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized") throw error;
  rs.initiate({ _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] });
}
if (!db.hello().isWritablePrimary) quit(1);
