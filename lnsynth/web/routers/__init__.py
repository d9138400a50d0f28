"""Routers of the web app (FastAPI ``APIRouter``), each a thin presentation of the analysis layer."""
