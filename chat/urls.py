"""Routes of the chat API."""

from django.urls import path

from chat import views

urlpatterns = [
    path("chat", views.chat, name="chat"),
    path("chat/<str:chat_id>/stream", views.chat_resume, name="chat-resume"),
    path("title/generate", views.generate_title, name="title-generate"),
    path("generate-title", views.generate_title, name="generate-title"),
    path("models", views.models, name="models"),
    path("openapi.json", views.openapi, name="openapi"),
]
