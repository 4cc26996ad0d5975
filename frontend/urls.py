from django.urls import path

from frontend import views

app_name = "frontend"

urlpatterns = [
    path("", views.study_index, name="study-index"),
    path("annotate/<slug:slug>/", views.annotate, name="annotate"),
]
