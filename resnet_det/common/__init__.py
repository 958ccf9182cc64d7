"""Pieces shared by every stage that need neither torch nor detectron2 (the deploy runner uses them)."""
