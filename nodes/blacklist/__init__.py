"""The joint blacklist on a node: store tables, sync, exports, publishing, CLI."""
