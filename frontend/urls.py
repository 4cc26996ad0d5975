from django.urls import path

from frontend import views

app_name = "frontend"

urlpatterns = [
    path("annotate/<slug:slug>/", views.annotate, name="annotate"),
]
