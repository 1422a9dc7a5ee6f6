"""Template fragments: an htmx request gets one named block of the page, anything else the page."""

from flask import current_app, render_template

from portal.extensions import htmx


def wants_fragment() -> bool:
    return bool(htmx) and not htmx.history_restore_request


def render_page(template: str, *, fragment: str | None = None, **context) -> str:
    """Render `template`, or only its `{% block fragment %}` for an htmx request."""
    if fragment is None or not wants_fragment():
        return render_template(template, **context)
    return render_block(template, fragment, **context)


def render_block(template_name: str, block: str, **context) -> str:
    env = current_app.jinja_env
    context["is_fragment"] = True
    current_app.update_template_context(context)
    template = env.get_template(template_name)
    render = template.blocks[block]
    return "".join(render(template.new_context(context)))
